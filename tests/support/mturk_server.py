"""A local Amazon Mechanical Turk requester API server, for tests that drive boto3's real client.

It speaks AWS JSON 1.1 (``POST /`` with ``X-Amz-Target: MTurkRequesterServiceV20170117.<Op>``)
and keeps HIT types, HITs, assignments, bonuses, blocks, qualification types and worker
qualifications in memory behind one lock. SigV4 ``Authorization`` headers are accepted unchecked.
Tests play the workers (:meth:`MTurkTestServer.submit_assignment`, ``accept_assignment``),
move the server's clock (``advance``) and read what MTurk would have charged (``debits``).
Pages hold 10 results unless ``MaxResults`` (1 to 100) says otherwise; ``NextToken`` is opaque.

Money follows MTurk: creating a HIT charges nothing but holds the reward plus fee of every open
or unreviewed assignment back from the available balance; approval (explicit, or automatic once
the HIT type's ``AutoApprovalDelayInSeconds`` has passed, checked lazily on every request) debits
reward and fee; rejection and expiry release what was held. Fees: 20% of the reward, 20% more
when the HIT has 10 or more assignments, 5% more when it requires Masters; at least $0.01,
rounded half-up to the cent. Bonuses pay a 20% fee, at least $0.01.

Errors carry MTurk's TurkErrorCodes where they are documented or observed in the wild:

- ``AWS.MechanicalTurk.HitAlreadyExists``: CreateHIT / CreateHITWithHITType with a
  ``UniqueRequestToken`` already used; the message names the existing HIT id (as MTurk's
  CreateHIT documentation says). Nothing is created.
- ``AWS.MechanicalTurk.InsufficientFunds``: a create, extension, bonus or approval the
  available balance cannot cover (MTurk's own message text).
- ``AWS.MechanicalTurk.InvalidAssignmentState`` / ``AWS.MechanicalTurk.InvalidHITState``:
  the "This operation can be called with a status of: ..." errors.
- ``AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease``: extending a HIT from fewer than
  10 assignments to 10 or more (documented for CreateAdditionalAssignmentsForHIT).
- ``AWS.MechanicalTurk.{HIT,Assignment,HITType,QualificationType}DoesNotExist``,
  ``AWS.MechanicalTurk.QualificationTypeAlreadyExists``, ``AWS.MechanicalTurk.XMLParseError``,
  ``AWS.ParameterOutOfRange``, ``AWS.MissingParameters``: MTurk's codes for these cases.
- ``AWS.MechanicalTurk.DuplicateRequest`` (code not documented by MTurk): SendBonus or
  CreateAdditionalAssignmentsForHIT repeating a ``UniqueRequestToken``. MTurk documents an
  error "with a message containing the request ID"; the message here is the one MTurk is seen
  to send ('The idempotency token "..." has already been processed.'). Nothing is paid twice.

Faults for retry tests (:meth:`MTurkTestServer.inject`): ``throttle`` answers 400
``ThrottlingException`` "Rate exceeded" (what MTurk sends; botocore retries it as throttling),
``service_fault`` answers 500 ``ServiceFault`` without performing the operation, and
``lost_response`` performs the operation and then closes the connection without a response.
"""

import copy
import dataclasses
import json
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

TARGET_PREFIX = "MTurkRequesterServiceV20170117."
CENT = Decimal("0.01")
MASTERS_QUALIFICATION_IDS = frozenset(
    {"2F1QJWKUDD8XADTFD2Q0G6UTO95ALH", "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6"}
)
# Every simulated worker holds these system qualifications: a spotless record in the US.
SYSTEM_QUALIFICATIONS: dict[str, Any] = {
    "000000000000000000L0": 100,  # PercentAssignmentsApproved
    "00000000000000000040": 10_000,  # NumberHITsApproved
    "00000000000000000060": 1,  # Adult
    "00000000000000000071": {"Country": "US"},  # Locale
}
ANSWER_NAMESPACE = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/"
    "QuestionFormAnswers.xsd"
)
# The operations served, each by the MTurkTestServer method named here.
OPERATIONS = {
    "CreateHITType": "_op_create_hit_type",
    "CreateHIT": "_op_create_hit",
    "CreateHITWithHITType": "_op_create_hit_with_hit_type",
    "GetHIT": "_op_get_hit",
    "ListHITs": "_op_list_hits",
    "UpdateExpirationForHIT": "_op_update_expiration_for_hit",
    "CreateAdditionalAssignmentsForHIT": "_op_create_additional_assignments_for_hit",
    "DeleteHIT": "_op_delete_hit",
    "ListAssignmentsForHIT": "_op_list_assignments_for_hit",
    "GetAssignment": "_op_get_assignment",
    "ApproveAssignment": "_op_approve_assignment",
    "RejectAssignment": "_op_reject_assignment",
    "SendBonus": "_op_send_bonus",
    "ListBonusPayments": "_op_list_bonus_payments",
    "GetAccountBalance": "_op_get_account_balance",
    "CreateWorkerBlock": "_op_create_worker_block",
    "DeleteWorkerBlock": "_op_delete_worker_block",
    "ListWorkerBlocks": "_op_list_worker_blocks",
    "CreateQualificationType": "_op_create_qualification_type",
    "ListQualificationTypes": "_op_list_qualification_types",
    "AssociateQualificationWithWorker": "_op_associate_qualification_with_worker",
    "DisassociateQualificationFromWorker": "_op_disassociate_qualification_from_worker",
    "ListWorkersWithQualificationType": "_op_list_workers_with_qualification_type",
}
TIMESTAMPS = (
    "CreationTime",
    "Expiration",
    "AutoApprovalTime",
    "AcceptTime",
    "SubmitTime",
    "ApprovalTime",
    "RejectionTime",
    "Deadline",
)
FAULTS = frozenset({"throttle", "service_fault", "lost_response"})
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
DEFAULT_AUTO_APPROVAL_DELAY = 2_592_000  # 30 days, MTurk's default
INSUFFICIENT_FUNDS = (
    "This Requester has insufficient funds in their account to complete this transaction. "
    "Please visit https://requester.mturk.com/prepayments/new to purchase Prepaid HITs."
)


class WorkerRefused(ValueError):
    """A simulated worker may not take an assignment on this HIT."""


class TurkError(Exception):
    """An MTurk ``RequestError`` (HTTP 400) with its ``TurkErrorCode``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass
class _HITType:
    hit_type_id: str
    group_id: str
    reward: Decimal
    title: str
    description: str
    keywords: str | None
    auto_approval_delay: int
    assignment_duration: int
    qualification_requirements: list[dict[str, Any]]


@dataclasses.dataclass
class _HIT:
    hit_id: str
    hit_type: _HITType
    created: float
    expiration: float
    max_assignments: int
    question: str | None
    annotation: str | None
    token: str | None
    layout_id: str | None
    assignment_ids: list[str] = dataclasses.field(default_factory=list)
    is_deleted: bool = False


@dataclasses.dataclass
class _Assignment:
    assignment_id: str
    hit_id: str
    worker_id: str
    accept_time: float
    deadline: float
    status: str = "Accepted"  # then Submitted, Approved or Rejected
    submit_time: float | None = None
    auto_approval_time: float | None = None
    approval_time: float | None = None
    rejection_time: float | None = None
    answer: str | None = None
    feedback: str | None = None


@dataclasses.dataclass
class _Fault:
    kind: str
    remaining: int


def new_id(length: int = 30) -> str:
    """Return a new MTurk-style identifier: upper-case letters and digits."""
    return uuid.uuid4().hex.upper()[:length]


def fee_for(reward: Decimal, *, max_assignments: int, is_masters: bool) -> Decimal:
    """Return MTurk's commission on one assignment's reward, in dollars."""
    rate = Decimal("0.20")
    if max_assignments >= 10:
        rate += Decimal("0.20")
    if is_masters:
        rate += Decimal("0.05")
    return max(CENT, (reward * rate).quantize(CENT, rounding=ROUND_HALF_UP))


def bonus_fee_for(amount: Decimal) -> Decimal:
    """Return MTurk's commission on a bonus, in dollars."""
    return max(CENT, (amount * Decimal("0.20")).quantize(CENT, rounding=ROUND_HALF_UP))


def answer_xml(answers: dict[str, str]) -> str:
    """Return the QuestionFormAnswers document MTurk stores for free-text answers."""
    parts = [
        f"<Answer><QuestionIdentifier>{escape(key)}</QuestionIdentifier>"
        f"<FreeText>{escape(value)}</FreeText></Answer>"
        for key, value in answers.items()
    ]
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<QuestionFormAnswers xmlns="{ANSWER_NAMESPACE}">{"".join(parts)}</QuestionFormAnswers>'
    )


def _money(text: Any, name: str) -> Decimal:
    try:
        amount = Decimal(str(text))
    except InvalidOperation:
        raise TurkError("AWS.ParameterOutOfRange", f"{name} is not a dollar amount") from None
    if not amount.is_finite() or amount != amount.quantize(CENT):
        raise TurkError("AWS.ParameterOutOfRange", f"{name} must be a whole number of cents")
    if amount < CENT:
        raise TurkError("AWS.ParameterOutOfRange", f"{name} must be at least 0.01")
    return amount.quantize(CENT)


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise TurkError(
            "AWS.MissingParameters", f"Your request is missing a required parameter: {name}"
        )
    return value


def _integer(params: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int:
    value = params.get(name, default)
    if value is None:
        raise TurkError(
            "AWS.MissingParameters", f"Your request is missing a required parameter: {name}"
        )
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TurkError(
            "AWS.ParameterOutOfRange",
            f"The value {value!r} for {name} is invalid. Valid values range from {low} to {high}.",
        )
    return value


def _missing(name: str) -> TurkError:
    return TurkError(
        "AWS.MissingParameters", f"Your request is missing a required parameter: {name}"
    )


def _stamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _compact(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if value is not None}


def _satisfies(requirement: dict[str, Any], value: Any) -> bool:
    comparator = requirement["Comparator"]
    if comparator == "Exists":
        return value is not None
    if comparator == "DoesNotExist":
        return value is None
    if value is None:
        return False
    if isinstance(value, dict):
        countries = {locale.get("Country") for locale in requirement.get("LocaleValues", [])}
        inside = value["Country"] in countries
        return inside if comparator in ("EqualTo", "In") else not inside
    wanted = requirement.get("IntegerValues") or [0]
    checks: dict[str, Callable[[], bool]] = {
        "LessThan": lambda: value < wanted[0],
        "LessThanOrEqualTo": lambda: value <= wanted[0],
        "GreaterThan": lambda: value > wanted[0],
        "GreaterThanOrEqualTo": lambda: value >= wanted[0],
        "EqualTo": lambda: value == wanted[0],
        "NotEqualTo": lambda: value != wanted[0],
        "In": lambda: value in wanted,
        "NotIn": lambda: value not in wanted,
    }
    return checks[comparator]()


class MTurkTestServer:
    """An in-memory MTurk requester endpoint on 127.0.0.1, run as a context manager.

    Args:
        balance: The prepaid balance, in dollars, that escrow and debits draw on.

    Attributes:
        endpoint_url: ``http://127.0.0.1:PORT``, for ``boto3.client("mturk", endpoint_url=...)``.
        calls: Every request received, as ``(operation, params)``, including faulted ones.
    """

    def __init__(self, *, balance: Decimal = Decimal("10000.00")) -> None:
        self._lock = threading.RLock()
        self._balance = balance
        self._clock_offset = 0.0
        self._hit_types: dict[str, _HITType] = {}
        self._hit_type_keys: dict[str, str] = {}
        self._hits: dict[str, _HIT] = {}
        self._assignments: dict[str, _Assignment] = {}
        self._open_assignment_ids: set[str] = set()
        self._hit_tokens: dict[str, str] = {}
        self._request_tokens: set[tuple[str, str]] = set()
        self._bonuses: list[dict[str, Any]] = []
        self._blocks: dict[str, str] = {}
        self._qualification_types: dict[str, dict[str, Any]] = {}
        self._qualifications: dict[tuple[str, str], dict[str, Any]] = {}
        self._masters: set[str] = set()
        self._debits: list[dict[str, Any]] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint_url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "MTurkTestServer":
        handler = type("Handler", (_Handler,), {"mturk": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        port = self._httpd.server_address[1]
        self.endpoint_url = f"http://127.0.0.1:{port}"
        # A short poll interval keeps shutdown (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"mturk-test-server-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    # -- worker side and inspection, for tests -----------------------------------------------

    def accept_assignment(self, hit_id: str, worker_id: str) -> str:
        """Let a worker accept an assignment without submitting it; return its AssignmentId."""
        with self._lock:
            now = self._tick()
            return self._accept(self._find_hit_for_worker(hit_id), worker_id, now).assignment_id

    def submit_assignment(
        self, hit_id: str, worker_id: str, answers: dict[str, str], *, seconds: int = 30
    ) -> str:
        """Let a worker accept (unless already accepted) and submit; return the AssignmentId.

        Raises:
            WorkerRefused: The HIT is not Assignable, the worker already worked on it, is
                blocked, or does not meet its qualification requirements.
        """
        with self._lock:
            now = self._tick()
            hit = self._find_hit_for_worker(hit_id)
            assignment = next(
                (
                    self._assignments[assignment_id]
                    for assignment_id in hit.assignment_ids
                    if self._assignments[assignment_id].worker_id == worker_id
                    and self._assignments[assignment_id].status == "Accepted"
                ),
                None,
            )
            if assignment is None:
                assignment = self._accept(hit, worker_id, now - seconds)
            assignment.status = "Submitted"
            assignment.submit_time = now
            assignment.auto_approval_time = now + hit.hit_type.auto_approval_delay
            assignment.answer = answer_xml(answers)
            return assignment.assignment_id

    def grant_masters(self, worker_id: str) -> None:
        """Give a worker the Masters qualification (production and sandbox ids)."""
        with self._lock:
            self._masters.add(worker_id)

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward, e.g. past an auto-approval delay or an expiry."""
        with self._lock:
            self._clock_offset += seconds

    def hits(self) -> list[dict[str, Any]]:
        """Return every HIT (deleted ones as ``Disposed``) as GetHIT shows it, plus its token."""
        with self._lock:
            now = self._tick()
            return [
                _snapshot(
                    {
                        "RequesterAnnotation": None,
                        **self._hit_view(hit, now),
                        "UniqueRequestToken": hit.token,
                    }
                )
                for hit in self._hits.values()
            ]

    def assignments(self, hit_id: str | None = None) -> list[dict[str, Any]]:
        """Return assignments as GetAssignment shows them; accepted, unsubmitted ones too."""
        with self._lock:
            self._tick()
            return [
                _snapshot(self._assignment_view(assignment))
                for assignment in self._assignments.values()
                if hit_id is None or assignment.hit_id == hit_id
            ]

    def blocked_workers(self) -> set[str]:
        """Return the ids of the workers the requester has blocked."""
        with self._lock:
            return set(self._blocks)

    def inject(self, operation: str, fault: str, times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` fail with ``fault`` (see module doc)."""
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {sorted(FAULTS)}, not {fault!r}")
        if operation not in OPERATIONS:
            raise ValueError(f"unknown MTurk operation {operation!r}")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._faults.setdefault(operation, deque()).append(_Fault(fault, times))

    def debits(self) -> list[dict[str, Any]]:
        """Return the money MTurk took, oldest first: rewards, fees, bonuses and bonus fees."""
        with self._lock:
            self._tick()
            return [dict(debit) for debit in self._debits]

    def total_debited(self) -> Decimal:
        """Return the sum of all debits, in dollars."""
        with self._lock:
            self._tick()
            return sum((debit["amount"] for debit in self._debits), Decimal("0.00"))

    def available_balance(self) -> Decimal:
        """Return the balance minus debits minus what open and unreviewed work holds back."""
        with self._lock:
            now = self._tick()
            return self._available(now)

    # -- request handling --------------------------------------------------------------------

    def handle(self, operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
        """Run one API call; return (HTTP status, JSON body, whether to drop the response)."""
        with self._lock:
            self.calls.append((operation, params))
            if operation not in OPERATIONS:
                return 400, {"__type": "UnknownOperationException", "Message": operation}, False
            fault = self._take_fault(operation)
            if fault == "throttle":
                return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}, False
            if fault == "service_fault":
                return (
                    500,
                    _error_body("ServiceFault", "AWS.ServiceUnavailable", "Service unavailable"),
                    False,
                )
            now = self._tick()
            try:
                body = getattr(self, OPERATIONS[operation])(params, now)
            except TurkError as error:
                return 400, _error_body("RequestError", error.code, error.message), False
            return 200, body, fault == "lost_response"

    def _take_fault(self, operation: str) -> str | None:
        queue = self._faults.get(operation)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault.kind

    # -- HIT types and HITs ------------------------------------------------------------------

    def _op_create_hit_type(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return {"HITTypeId": self._register_hit_type(params).hit_type_id}

    def _op_create_hit(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._check_hit_token(params)
        hit_type = self._register_hit_type(params)
        return {"HIT": self._hit_view(self._create_hit(hit_type, params, now), now)}

    def _op_create_hit_with_hit_type(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._check_hit_token(params)
        hit_type = self._hit_types.get(_text(params, "HITTypeId"))
        if hit_type is None:
            raise TurkError(
                "AWS.MechanicalTurk.HITTypeDoesNotExist",
                f"HITType {params['HITTypeId']} does not exist. ({_request_stamp(now)})",
            )
        return {"HIT": self._hit_view(self._create_hit(hit_type, params, now), now)}

    def _op_get_hit(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return {"HIT": self._hit_view(self._get_hit(params, now), now)}

    def _op_list_hits(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        live = [hit for hit in self._hits.values() if not hit.is_deleted]
        page, token = _page(live, params)
        body = {"NumResults": len(page), "HITs": [self._hit_view(hit, now) for hit in page]}
        return _compact({**body, "NextToken": token})

    def _op_update_expiration_for_hit(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        hit = self._get_hit(params, now, live=True)
        expire_at = params.get("ExpireAt")
        if not isinstance(expire_at, int | float):
            raise _missing("ExpireAt")
        hit.expiration = max(float(expire_at), now)
        return {}

    def _op_create_additional_assignments_for_hit(
        self, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        hit = self._get_hit(params, now, live=True)
        extra = _integer(params, "NumberOfAdditionalAssignments", None, 1, 1_000_000_000)
        token = params.get("UniqueRequestToken")
        if token is not None:
            self._check_request_token("CreateAdditionalAssignmentsForHIT", token, now)
        if hit.max_assignments < 10 <= hit.max_assignments + extra:
            raise TurkError(
                "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease",
                "HITs created with fewer than 10 assignments cannot be extended to have 10 or "
                f"more assignments. ({_request_stamp(now)})",
            )
        self._require_funds(extra * self._unit_cost(hit), now)
        hit.max_assignments += extra
        if token is not None:
            self._request_tokens.add(("CreateAdditionalAssignmentsForHIT", token))
        return {}

    def _op_delete_hit(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        hit = self._get_hit(params, now)
        if hit.is_deleted:
            return {}
        status = self._hit_status(hit, now)
        unreviewed = any(
            self._assignments[assignment_id].status == "Submitted"
            for assignment_id in hit.assignment_ids
        )
        if status != "Reviewable" or unreviewed:
            raise TurkError(
                "AWS.MechanicalTurk.InvalidHITState",
                f"This HIT is currently in the state '{status}'.  This operation can be called "
                "with a status of: Reviewing, Reviewable, and only once every submitted "
                f"assignment is approved or rejected. ({_request_stamp(now)})",
            )
        hit.is_deleted = True
        return {}

    def _register_hit_type(self, params: dict[str, Any]) -> _HITType:
        requirements = params.get("QualificationRequirements") or []
        for requirement in requirements:
            self._check_qualification_type(requirement.get("QualificationTypeId"))
        candidate = _HITType(
            hit_type_id="",
            group_id="",
            reward=_money(params.get("Reward"), "Reward"),
            title=_text(params, "Title"),
            description=_text(params, "Description"),
            keywords=params.get("Keywords"),
            auto_approval_delay=_integer(
                params, "AutoApprovalDelayInSeconds", DEFAULT_AUTO_APPROVAL_DELAY, 0, 2_592_000
            ),
            assignment_duration=_integer(
                params, "AssignmentDurationInSeconds", None, 30, 31_536_000
            ),
            qualification_requirements=requirements,
        )
        # Same parameters, same HIT type: MTurk's CreateHITType is idempotent this way.
        key = json.dumps(dataclasses.asdict(candidate), sort_keys=True, default=str)
        hit_type_id = self._hit_type_keys.get(key)
        if hit_type_id is None:
            hit_type_id = new_id()
            self._hit_type_keys[key] = hit_type_id
            self._hit_types[hit_type_id] = dataclasses.replace(
                candidate, hit_type_id=hit_type_id, group_id=new_id()
            )
        return self._hit_types[hit_type_id]

    def _check_hit_token(self, params: dict[str, Any]) -> None:
        token = params.get("UniqueRequestToken")
        if token is not None and token in self._hit_tokens:
            hit_id = self._hit_tokens[token]
            raise TurkError(
                "AWS.MechanicalTurk.HitAlreadyExists",
                f'The HIT with ID "{hit_id}" already exists for UniqueRequestToken "{token}". '
                f"({_request_stamp(self._now())})",
            )

    def _create_hit(self, hit_type: _HITType, params: dict[str, Any], now: float) -> _HIT:
        lifetime = _integer(params, "LifetimeInSeconds", None, 30, 31_536_000)
        max_assignments = _integer(params, "MaxAssignments", 1, 1, 1_000_000_000)
        question = params.get("Question")
        layout_id = params.get("HITLayoutId")
        if question is None and layout_id is None:
            raise TurkError("AWS.MissingParameters", "Either Question or HITLayoutId is required")
        if question is not None:
            try:
                ElementTree.fromstring(question)
            except ElementTree.ParseError as error:
                raise TurkError(
                    "AWS.MechanicalTurk.XMLParseError",
                    f"There was an error parsing the XML question or answer data: {error}",
                ) from None
        hit = _HIT(
            hit_id=new_id(),
            hit_type=hit_type,
            created=now,
            expiration=now + lifetime,
            max_assignments=max_assignments,
            question=question,
            annotation=params.get("RequesterAnnotation"),
            token=params.get("UniqueRequestToken"),
            layout_id=layout_id,
        )
        self._require_funds(max_assignments * self._unit_cost(hit), now)
        self._hits[hit.hit_id] = hit
        if hit.token is not None:
            self._hit_tokens[hit.token] = hit.hit_id
        return hit

    def _get_hit(self, params: dict[str, Any], now: float, *, live: bool = False) -> _HIT:
        hit_id = _text(params, "HITId")
        hit = self._hits.get(hit_id)
        if hit is None or (live and hit.is_deleted):
            raise TurkError(
                "AWS.MechanicalTurk.HITDoesNotExist",
                f"Hit {hit_id} does not exist. ({_request_stamp(now)})",
            )
        return hit

    def _hit_status(self, hit: _HIT, now: float) -> str:
        if hit.is_deleted:
            return "Disposed"
        pending = sum(
            self._assignments[assignment_id].status == "Accepted"
            for assignment_id in hit.assignment_ids
        )
        if now < hit.expiration and len(hit.assignment_ids) < hit.max_assignments:
            return "Assignable"
        return "Unassignable" if pending else "Reviewable"

    def _hit_view(self, hit: _HIT, now: float) -> dict[str, Any]:
        statuses = [self._assignments[assignment_id].status for assignment_id in hit.assignment_ids]
        hit_type = hit.hit_type
        return _compact(
            {
                "HITId": hit.hit_id,
                "HITTypeId": hit_type.hit_type_id,
                "HITGroupId": hit_type.group_id,
                "HITLayoutId": hit.layout_id,
                "CreationTime": hit.created,
                "Title": hit_type.title,
                "Description": hit_type.description,
                "Question": hit.question,
                "Keywords": hit_type.keywords,
                "HITStatus": self._hit_status(hit, now),
                "MaxAssignments": hit.max_assignments,
                "Reward": str(hit_type.reward),
                "AutoApprovalDelayInSeconds": hit_type.auto_approval_delay,
                "Expiration": hit.expiration,
                "AssignmentDurationInSeconds": hit_type.assignment_duration,
                "RequesterAnnotation": hit.annotation,
                "QualificationRequirements": hit_type.qualification_requirements,
                "HITReviewStatus": "NotReviewed",
                "NumberOfAssignmentsPending": statuses.count("Accepted"),
                "NumberOfAssignmentsAvailable": max(0, hit.max_assignments - len(statuses)),
                "NumberOfAssignmentsCompleted": statuses.count("Approved")
                + statuses.count("Rejected"),
            }
        )

    # -- assignments -------------------------------------------------------------------------

    def _op_list_assignments_for_hit(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        hit = self._get_hit(params, now)
        wanted = set(params.get("AssignmentStatuses") or ("Submitted", "Approved", "Rejected"))
        matching = [
            self._assignments[assignment_id]
            for assignment_id in hit.assignment_ids
            if self._assignments[assignment_id].status in wanted - {"Accepted"}
        ]
        page, token = _page(matching, params)
        body = {
            "NumResults": len(page),
            "Assignments": [self._assignment_view(assignment) for assignment in page],
        }
        return _compact({**body, "NextToken": token})

    def _op_get_assignment(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        assignment = self._get_assignment(params, now)
        return {
            "Assignment": self._assignment_view(assignment),
            "HIT": self._hit_view(self._hits[assignment.hit_id], now),
        }

    def _op_approve_assignment(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        assignment = self._get_assignment(params, now)
        overriding = assignment.status == "Rejected" and params.get("OverrideRejection") is True
        if assignment.status != "Submitted" and not overriding:
            raise _state_error(now)
        if overriding:
            self._require_funds(self._unit_cost(self._hits[assignment.hit_id]), now)
        self._approve(assignment, now, params.get("RequesterFeedback"))
        return {}

    def _op_reject_assignment(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        assignment = self._get_assignment(params, now)
        feedback = _text(params, "RequesterFeedback")
        if assignment.status != "Submitted":
            raise _state_error(now)
        assignment.status = "Rejected"
        assignment.rejection_time = now
        assignment.feedback = feedback
        self._open_assignment_ids.discard(assignment.assignment_id)
        return {}

    def _get_assignment(self, params: dict[str, Any], now: float) -> _Assignment:
        assignment_id = _text(params, "AssignmentId")
        assignment = self._assignments.get(assignment_id)
        if assignment is None or assignment.status == "Accepted":
            raise TurkError(
                "AWS.MechanicalTurk.AssignmentDoesNotExist",
                f"Assignment {assignment_id} does not exist. ({_request_stamp(now)})",
            )
        return assignment

    def _find_hit_for_worker(self, hit_id: str) -> _HIT:
        hit = self._hits.get(hit_id)
        if hit is None:
            raise WorkerRefused(f"HIT {hit_id} does not exist")
        return hit

    def _accept(self, hit: _HIT, worker_id: str, accept_time: float) -> _Assignment:
        now = self._now()
        status = self._hit_status(hit, now)
        if status != "Assignable":
            raise WorkerRefused(f"HIT {hit.hit_id} is {status}, not Assignable")
        if any(self._assignments[a].worker_id == worker_id for a in hit.assignment_ids):
            raise WorkerRefused(f"worker {worker_id} already has an assignment on {hit.hit_id}")
        if worker_id in self._blocks:
            raise WorkerRefused(f"worker {worker_id} is blocked")
        for requirement in hit.hit_type.qualification_requirements:
            value = self._worker_qualification(worker_id, requirement["QualificationTypeId"])
            if not _satisfies(requirement, value):
                raise WorkerRefused(
                    f"worker {worker_id} does not meet {requirement['QualificationTypeId']} "
                    f"{requirement['Comparator']}"
                )
        assignment = _Assignment(
            assignment_id=new_id(),
            hit_id=hit.hit_id,
            worker_id=worker_id,
            accept_time=accept_time,
            deadline=accept_time + hit.hit_type.assignment_duration,
        )
        self._assignments[assignment.assignment_id] = assignment
        self._open_assignment_ids.add(assignment.assignment_id)
        hit.assignment_ids.append(assignment.assignment_id)
        return assignment

    def _approve(self, assignment: _Assignment, now: float, feedback: str | None) -> None:
        hit = self._hits[assignment.hit_id]
        assignment.status = "Approved"
        assignment.approval_time = now
        assignment.rejection_time = None
        if feedback is not None:
            assignment.feedback = feedback
        self._open_assignment_ids.discard(assignment.assignment_id)
        reference = {
            "assignment_id": assignment.assignment_id,
            "hit_id": hit.hit_id,
            "worker_id": assignment.worker_id,
        }
        self._debits.append({"kind": "reward", "amount": hit.hit_type.reward, **reference})
        self._debits.append({"kind": "fee", "amount": self._fee(hit), **reference})

    def _assignment_view(self, assignment: _Assignment) -> dict[str, Any]:
        return _compact(
            {
                "AssignmentId": assignment.assignment_id,
                "WorkerId": assignment.worker_id,
                "HITId": assignment.hit_id,
                "AssignmentStatus": assignment.status,
                "AutoApprovalTime": assignment.auto_approval_time,
                "AcceptTime": assignment.accept_time,
                "SubmitTime": assignment.submit_time,
                "ApprovalTime": assignment.approval_time,
                "RejectionTime": assignment.rejection_time,
                "Deadline": assignment.deadline,
                "Answer": assignment.answer,
                "RequesterFeedback": assignment.feedback,
            }
        )

    # -- bonuses and balance -----------------------------------------------------------------

    def _op_send_bonus(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        worker_id = _text(params, "WorkerId")
        assignment = self._get_assignment(params, now)
        amount = _money(params.get("BonusAmount"), "BonusAmount")
        reason = _text(params, "Reason")
        token = params.get("UniqueRequestToken")
        if token is not None:
            self._check_request_token("SendBonus", token, now)
        if assignment.worker_id != worker_id:
            raise TurkError(
                "AWS.ParameterOutOfRange",
                f"Assignment {assignment.assignment_id} was not worked by {worker_id}. "
                f"({_request_stamp(now)})",
            )
        fee = bonus_fee_for(amount)
        self._require_funds(amount + fee, now)
        bonus = {
            "WorkerId": worker_id,
            "BonusAmount": str(amount),
            "AssignmentId": assignment.assignment_id,
            "Reason": reason,
            "GrantTime": now,
        }
        self._bonuses.append(bonus)
        if token is not None:
            self._request_tokens.add(("SendBonus", token))
        reference = {
            "assignment_id": assignment.assignment_id,
            "hit_id": assignment.hit_id,
            "worker_id": worker_id,
        }
        self._debits.append({"kind": "bonus", "amount": amount, **reference})
        self._debits.append({"kind": "bonus_fee", "amount": fee, **reference})
        return {}

    def _op_list_bonus_payments(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        hit_id, assignment_id = params.get("HITId"), params.get("AssignmentId")
        if (hit_id is None) == (assignment_id is None):
            raise TurkError(
                "AWS.MissingParameters", "Exactly one of HITId or AssignmentId must be given"
            )
        if hit_id is not None:
            hit = self._get_hit(params, now)
            wanted = set(hit.assignment_ids)
        else:
            wanted = {self._get_assignment(params, now).assignment_id}
        matching = [bonus for bonus in self._bonuses if bonus["AssignmentId"] in wanted]
        page, token = _page(matching, params)
        return _compact({"NumResults": len(page), "BonusPayments": page, "NextToken": token})

    def _op_get_account_balance(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "AvailableBalance": str(self._available(now)),
            "OnHoldBalance": str(self._escrow(now)),
        }

    def _check_request_token(self, operation: str, token: str, now: float) -> None:
        if (operation, token) in self._request_tokens:
            raise TurkError(
                "AWS.MechanicalTurk.DuplicateRequest",
                f'The idempotency token "{token}" has already been processed. '
                f"({_request_stamp(now)})",
            )

    def _fee(self, hit: _HIT) -> Decimal:
        is_masters = any(
            requirement["QualificationTypeId"] in MASTERS_QUALIFICATION_IDS
            for requirement in hit.hit_type.qualification_requirements
        )
        return fee_for(
            hit.hit_type.reward, max_assignments=hit.max_assignments, is_masters=is_masters
        )

    def _unit_cost(self, hit: _HIT) -> Decimal:
        return hit.hit_type.reward + self._fee(hit)

    def _escrow(self, now: float) -> Decimal:
        held = Decimal("0.00")
        for hit in self._hits.values():
            open_slots = 0
            if not hit.is_deleted and now < hit.expiration:
                open_slots = hit.max_assignments - len(hit.assignment_ids)
            unreviewed = sum(
                self._assignments[assignment_id].status in ("Accepted", "Submitted")
                for assignment_id in hit.assignment_ids
            )
            if open_slots or unreviewed:
                held += (open_slots + unreviewed) * self._unit_cost(hit)
        return held

    def _available(self, now: float) -> Decimal:
        spent = sum((debit["amount"] for debit in self._debits), Decimal("0.00"))
        return self._balance - spent - self._escrow(now)

    def _require_funds(self, amount: Decimal, now: float) -> None:
        if amount > self._available(now):
            raise TurkError(
                "AWS.MechanicalTurk.InsufficientFunds",
                f"{INSUFFICIENT_FUNDS} ({_request_stamp(now)})",
            )

    # -- blocks and qualifications -----------------------------------------------------------

    def _op_create_worker_block(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._blocks[_text(params, "WorkerId")] = _text(params, "Reason")
        return {}

    def _op_delete_worker_block(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self._blocks.pop(_text(params, "WorkerId"), None)
        return {}

    def _op_list_worker_blocks(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        blocks = [{"WorkerId": worker, "Reason": reason} for worker, reason in self._blocks.items()]
        page, token = _page(blocks, params)
        return _compact({"NumResults": len(page), "WorkerBlocks": page, "NextToken": token})

    def _op_create_qualification_type(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        name = _text(params, "Name")
        if any(existing["Name"] == name for existing in self._qualification_types.values()):
            raise TurkError(
                "AWS.MechanicalTurk.QualificationTypeAlreadyExists",
                "You have already created a QualificationType with this name. A "
                "QualificationType's name must be unique among all of the QualificationTypes "
                f"created by the same user. ({_request_stamp(now)})",
            )
        qualification_type = _compact(
            {
                "QualificationTypeId": new_id(),
                "CreationTime": now,
                "Name": name,
                "Description": _text(params, "Description"),
                "Keywords": params.get("Keywords"),
                "QualificationTypeStatus": _text(params, "QualificationTypeStatus"),
                "RetryDelayInSeconds": params.get("RetryDelayInSeconds"),
                "IsRequestable": bool(params.get("Test") or params.get("AutoGranted")),
                "AutoGranted": bool(params.get("AutoGranted", False)),
                "AutoGrantedValue": params.get("AutoGrantedValue", 1)
                if params.get("AutoGranted")
                else None,
            }
        )
        self._qualification_types[qualification_type["QualificationTypeId"]] = qualification_type
        return {"QualificationType": qualification_type}

    def _op_list_qualification_types(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        """The requester's own qualification types (the server knows no one else's).

        ``Query`` matches name, description and keywords, case-insensitively;
        ``MustBeRequestable`` (required, as on MTurk) keeps the requestable ones only.
        """
        requestable = params.get("MustBeRequestable")
        if not isinstance(requestable, bool):
            raise _missing("MustBeRequestable")
        query = str(params.get("Query") or "").lower()
        matching = [
            dict(qualification_type)
            for qualification_type in self._qualification_types.values()
            if (not requestable or qualification_type["IsRequestable"])
            and query
            in " ".join(
                str(qualification_type.get(key) or "")
                for key in ("Name", "Description", "Keywords")
            ).lower()
        ]
        page, token = _page(matching, params)
        return _compact({"NumResults": len(page), "QualificationTypes": page, "NextToken": token})

    def _op_associate_qualification_with_worker(
        self, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        type_id = _text(params, "QualificationTypeId")
        self._check_qualification_type(type_id, custom_only=True)
        worker_id = _text(params, "WorkerId")
        self._qualifications[(type_id, worker_id)] = {
            "QualificationTypeId": type_id,
            "WorkerId": worker_id,
            "GrantTime": now,
            "IntegerValue": params.get("IntegerValue", 1),
            "Status": "Granted",
        }
        return {}

    def _op_disassociate_qualification_from_worker(
        self, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        type_id = _text(params, "QualificationTypeId")
        self._check_qualification_type(type_id, custom_only=True)
        qualification = self._qualifications.get((type_id, _text(params, "WorkerId")))
        if qualification is None:
            raise TurkError(
                "AWS.MechanicalTurk.QualificationDoesNotExist",
                f"This worker does not hold qualification {type_id}. ({_request_stamp(now)})",
            )
        qualification["Status"] = "Revoked"
        return {}

    def _op_list_workers_with_qualification_type(
        self, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        type_id = _text(params, "QualificationTypeId")
        self._check_qualification_type(type_id, custom_only=True)
        status = params.get("Status")
        matching = [
            dict(qualification)
            for (held_type, _), qualification in self._qualifications.items()
            if held_type == type_id and (status is None or qualification["Status"] == status)
        ]
        page, token = _page(matching, params)
        return _compact({"NumResults": len(page), "Qualifications": page, "NextToken": token})

    def _check_qualification_type(self, type_id: Any, *, custom_only: bool = False) -> None:
        known = type_id in self._qualification_types or (
            not custom_only
            and (type_id in SYSTEM_QUALIFICATIONS or type_id in MASTERS_QUALIFICATION_IDS)
        )
        if not known:
            raise TurkError(
                "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
                f"QualificationType {type_id} does not exist. ({_request_stamp(self._now())})",
            )

    def _worker_qualification(self, worker_id: str, type_id: str) -> Any:
        if type_id in MASTERS_QUALIFICATION_IDS:
            return 1 if worker_id in self._masters else None
        if type_id in SYSTEM_QUALIFICATIONS:
            return SYSTEM_QUALIFICATIONS[type_id]
        qualification = self._qualifications.get((type_id, worker_id))
        if qualification is not None:
            return qualification["IntegerValue"] if qualification["Status"] == "Granted" else None
        qualification_type = self._qualification_types[type_id]
        return qualification_type.get("AutoGrantedValue")

    # -- time --------------------------------------------------------------------------------

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def _tick(self) -> float:
        """Apply what time did since the last call: abandonment and auto-approval."""
        now = self._now()
        for assignment_id in list(self._open_assignment_ids):
            assignment = self._assignments[assignment_id]
            if assignment.status == "Accepted" and now >= assignment.deadline:
                # An abandoned assignment frees its slot; MTurk does not list it.
                self._open_assignment_ids.discard(assignment_id)
                self._hits[assignment.hit_id].assignment_ids.remove(assignment_id)
                del self._assignments[assignment_id]
            elif (
                assignment.status == "Submitted"
                and assignment.auto_approval_time is not None
                and now >= assignment.auto_approval_time
            ):
                self._approve(assignment, assignment.auto_approval_time, None)
        return now


class _Handler(BaseHTTPRequestHandler):
    """Turn AWS JSON 1.1 requests into :meth:`MTurkTestServer.handle` calls."""

    mturk: MTurkTestServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else ""
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"__type": "SerializationException", "Message": "Invalid JSON"})
            return
        status, body, drop = self.mturk.handle(operation, params)
        if drop:
            # Performed but never answered: the client sees the connection close at once.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(status, body)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


def _error_body(kind: str, code: str, message: str) -> dict[str, Any]:
    return {"__type": kind, "Message": message, "TurkErrorCode": code}


def _state_error(now: float) -> TurkError:
    return TurkError(
        "AWS.MechanicalTurk.InvalidAssignmentState",
        f"This operation can be called with a status of: Submitted ({_request_stamp(now)})",
    )


def _request_stamp(now: float) -> int:
    """MTurk ends its messages with a millisecond timestamp in parentheses."""
    return int(now * 1000)


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    size = _integer(params, "MaxResults", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    token = params.get("NextToken")
    start = 0
    if token is not None:
        if not isinstance(token, str) or not token.isdigit():
            raise TurkError("AWS.ParameterOutOfRange", f"NextToken {token!r} is not valid")
        start = int(token)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def _snapshot(record: dict[str, Any]) -> dict[str, Any]:
    """Copy a wire record for tests, with timestamps as aware UTC datetimes."""
    copied = copy.deepcopy(record)
    return {**copied, **{key: _stamp(copied[key]) for key in TIMESTAMPS if key in copied}}
