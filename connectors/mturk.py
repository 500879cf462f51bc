"""Amazon Mechanical Turk through boto3: HITs out, assignments back, reviews, blocks, bonuses.

MTurk has announced that it closes to new customers; this connector serves requesters
with existing accounts and services that speak MTurk's API.

Credentials come only from boto3's usual chain (environment, shared files, instance
roles); the workforce config never holds them. Publishing a batch:

1. prices it: the items go into HITs of `items_per_hit` items, one HIT per item group
   and slot count, with `MaxAssignments` = the slots wanted. When 10 or more slots
   would pay MTurk's 20% large-HIT surcharge, `billing.fees.choose_mturk_packaging`
   splits them over HITs of at most 9 assignments; the saving is kept in the batch's
   connector state (`packaging`) and logged;
2. refuses (InsufficientBalanceError, the batch stays unpublished) when
   GetAccountBalance cannot pay the rewards plus MTurk's fees;
3. registers one HIT type per project and reward (CreateHITType is idempotent on MTurk)
   with a `DoesNotExist` requirement on the workforce's block qualification, and
   Masters when configured;
4. creates each HIT with a UniqueRequestToken derived from the batch id, the item ids
   and the part number. A retry after a lost response gets HitAlreadyExists, read as
   success: the HIT is found by the id in the message or by its RequesterAnnotation
   (the same token).

Collecting lists the submitted assignments of every HIT of the batch (all pages) and
parses their QuestionFormAnswers (connectors.mturk_forms). Reviews, blocks, top-ups
(`extend_hit`, `add_hit`) and closing HITs are driven by
orchestrator.services.mturk_review; bonuses by orchestrator.services.bonuses, which
names the worker's assignments from Quorum's own records.
"""

import hashlib
import logging
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from billing.fees import MTURK_CURRENCY, choose_mturk_packaging, mturk_hit_cost
from billing.money import CENT, format_amount
from connectors.base import (
    BatchSpec,
    CollectedAnswer,
    Connector,
    ConnectorConfigError,
    ConnectorError,
    SubmissionRef,
    TaskSpec,
    WorkerInfo,
    WorkforceUnavailableError,
)
from connectors.config_checks import check_http_url, check_region, invalid, refuse_credentials
from connectors.mturk_forms import AnswerFormatError, labels_by_task, parse_answers, render_question

log = logging.getLogger("quorum.connectors.mturk")

ENDPOINTS = {
    True: "https://mturk-requester-sandbox.us-east-1.amazonaws.com",
    False: "https://mturk-requester.us-east-1.amazonaws.com",
}
MASTERS_QUALIFICATION = {
    True: "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6",
    False: "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH",
}
DEFAULTS: dict[str, Any] = {
    "sandbox": True,
    "endpoint_url": None,
    "region": "us-east-1",
    "max_attempts": 5,
    "retry_mode": "standard",
    "connect_timeout": 10,
    "read_timeout": 30,
    "assignment_duration_s": 600,
    "auto_approval_delay_s": 3 * 86_400,
    "lifetime_s": 7 * 86_400,
    "keywords": "labeling, classification",
    "masters": False,
    "items_per_hit": 1,
    "block_qualification_name": "Quorum blocked workers",
}
RETRY_MODES = ("standard", "adaptive", "legacy")
THROTTLE_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException"}
HIT_ID = re.compile(r"\b[A-Z0-9]{20,40}\b")
ASSIGNMENT_STATUSES = ("Submitted", "Approved", "Rejected")
PAGE = 100
# Throttling that botocore does not recognise is retried here: full jitter, doubling.
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 20.0
# Block qualification ids by (endpoint, name): created once, then reused by every HIT type.
_QUALIFICATIONS: dict[tuple[str, str], str] = {}


class InsufficientBalanceError(ConnectorError):
    """The MTurk account's balance cannot pay a batch's rewards and fees."""

    code = "insufficient_balance"


class MTurkRequestError(ConnectorError):
    """MTurk refused a request (RequestError); retrying the same request will not help."""

    code = "mturk_request_error"


@dataclass(frozen=True)
class PlannedHit:
    """One HIT to create: its items, MaxAssignments, reward and UniqueRequestToken."""

    token: str
    task_refs: tuple[str, ...]
    max_assignments: int
    reward: Decimal


@dataclass(frozen=True)
class Plan:
    """A batch's HITs, what they cost with MTurk's fees, and what the packaging saved."""

    hits: tuple[PlannedHit, ...]
    cost: Decimal
    saving: Decimal
    cost_unsplit: Decimal


@dataclass(frozen=True)
class MTurkAssignment:
    """One assignment as MTurk reports it, with its answers read out per item."""

    assignment_id: str
    hit_id: str
    worker_ref: str
    status: str
    answers: tuple[CollectedAnswer, ...] = ()
    reward: Decimal | None = None
    max_assignments: int | None = None
    is_readable: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


def _check_int(config: Mapping[str, Any], key: str, low: int, high: int) -> None:
    value = config.get(key)
    if value is not None and not (
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    ):
        raise invalid(key, f"must be an integer from {low} to {high}")


def hit_token(batch_id: int, task_refs: Sequence[str], part: int) -> str:
    """Return the UniqueRequestToken of one HIT of a batch (deterministic, at most 64 chars)."""
    digest = hashlib.sha256(f"{batch_id}|{','.join(task_refs)}|{part}".encode()).hexdigest()
    return f"quorum-b{batch_id}-p{part}-{digest[:24]}"[:64]


def assignment_of(external_id: str) -> str:
    """Return the MTurk AssignmentId of a collected answer's external id."""
    return external_id.split(":", 1)[0]


class MTurkConnector(Connector):
    """Amazon Mechanical Turk: HITs with HTMLQuestion forms, polled with ListAssignmentsForHIT."""

    kind = "mturk"
    is_pull = False
    gold_on_demand = False

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check the MTurk settings (see DEFAULTS); credentials are never accepted here."""
        refuse_credentials(
            config,
            "MTurk credentials come from boto3's chain "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, instance role)",
        )
        unknown = sorted(set(config) - set(DEFAULTS))
        if unknown:
            raise ConnectorConfigError(
                f"unknown mturk setting {unknown[0]!r}",
                details={"config": [f"unknown key: {key}" for key in unknown]},
            )
        for key in ("sandbox", "masters"):
            if key in config and not isinstance(config[key], bool):
                raise invalid(key, "must be true or false")
        check_http_url(config, "endpoint_url")
        check_region(config, "region")
        if config.get("retry_mode", "standard") not in RETRY_MODES:
            raise invalid("retry_mode", f"must be one of: {', '.join(RETRY_MODES)}")
        _check_int(config, "max_attempts", 1, 20)
        for key in ("connect_timeout", "read_timeout"):
            value = config.get(key)
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 300
            ):
                raise invalid(key, "must be a number of seconds above 0, at most 300")
        _check_int(config, "assignment_duration_s", 30, 31_536_000)
        _check_int(config, "auto_approval_delay_s", 0, 2_592_000)
        _check_int(config, "lifetime_s", 30, 31_536_000)
        _check_int(config, "items_per_hit", 1, 100)
        keywords = config.get("keywords")
        if keywords is not None and not (isinstance(keywords, str) and len(keywords) <= 1000):
            raise invalid("keywords", "must be a comma-separated string of at most 1000 chars")
        name = config.get("block_qualification_name")
        if name is not None and not (isinstance(name, str) and 1 <= len(name) <= 200):
            raise invalid("block_qualification_name", "must be a name of 1 to 200 characters")
        return config

    def setting(self, key: str) -> Any:
        """Return a setting, or its default."""
        value = self.config.get(key)
        return DEFAULTS[key] if value is None else value

    @property
    def sandbox(self) -> bool:
        """Whether HITs go to the worker sandbox (the default) rather than production."""
        return bool(self.setting("sandbox"))

    @cached_property
    def client(self) -> Any:
        """The boto3 MTurk client: credentials from boto3's chain, retries as configured."""
        config = Config(
            retries={
                "total_max_attempts": self.setting("max_attempts"),
                "mode": self.setting("retry_mode"),
            },
            connect_timeout=self.setting("connect_timeout"),
            read_timeout=self.setting("read_timeout"),
        )
        return boto3.session.Session().client(
            "mturk",
            region_name=self.setting("region"),
            endpoint_url=self.setting("endpoint_url") or ENDPOINTS[self.sandbox],
            config=config,
        )

    # --- calls -----------------------------------------------------------------

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call one MTurk operation; throttling is retried with backoff, failures are mapped.

        Raises:
            WorkforceUnavailableError: MTurk did not answer, throttled past the retries,
                or answered ServiceFault: try again later.
            MTurkRequestError: MTurk refused the request (RequestError).
        """
        method = getattr(self.client, xform_name(operation))
        attempts = int(self.setting("max_attempts"))
        for attempt in range(attempts):
            try:
                response: dict[str, Any] = method(**params)
                return response
            except ClientError as exc:
                code, turk_code, message = _error_parts(exc)
                if _is_throttle(code, turk_code, message):
                    retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                    if retried == 0 and attempt + 1 < attempts:
                        time.sleep(
                            random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
                        )
                        continue
                    raise WorkforceUnavailableError(
                        f"MTurk throttled {operation}: {message}", details={"operation": operation}
                    ) from exc
                if (
                    code == "ServiceFault"
                    or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400) >= 500
                ):
                    raise WorkforceUnavailableError(
                        f"MTurk failed {operation}: {message}", details={"operation": operation}
                    ) from exc
                raise MTurkRequestError(
                    f"MTurk refused {operation}: {message}",
                    details={"operation": operation, "code": code, "turk_error_code": turk_code},
                ) from exc
            except BotoCoreError as exc:
                raise WorkforceUnavailableError(
                    f"MTurk unreachable during {operation}: {exc}", details={"operation": operation}
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def pages(self, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield every element of a paginated listing (`key`), following NextToken."""
        token: str | None = None
        while True:
            page = self.call(
                operation, MaxResults=PAGE, **params, **({"NextToken": token} if token else {})
            )
            yield from page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return

    # --- money -----------------------------------------------------------------

    def balance(self) -> Decimal:
        """Return the account's available balance in USD (GetAccountBalance)."""
        return Decimal(self.call("GetAccountBalance")["AvailableBalance"])

    def plan(self, batch: BatchSpec) -> Plan:
        """Group a batch's tasks into HITs, split to avoid the 10+ surcharge, and price them."""
        if batch.currency != MTURK_CURRENCY:
            raise ConnectorError(
                f"MTurk pays in USD; the project's currency is {batch.currency}",
                details={"currency": ["must be USD for an mturk workforce"]},
            )
        if batch.reward != batch.reward.quantize(CENT) or batch.reward <= 0:
            raise ConnectorError(
                f"MTurk rewards are whole cents above zero, not {batch.reward}",
                details={"reward": ["must be whole US cents, at least 0.01"]},
            )
        masters = bool(self.setting("masters"))
        per_hit = int(self.setting("items_per_hit"))
        by_slots: dict[int, list[TaskSpec]] = {}
        for task in batch.tasks:
            by_slots.setdefault(task.slots, []).append(task)
        hits: list[PlannedHit] = []
        cost = saving = Decimal(0)
        for slots, tasks in sorted(by_slots.items()):
            for start in range(0, len(tasks), per_hit):
                refs = tuple(task.task_ref for task in tasks[start : start + per_hit])
                reward = batch.reward * len(refs)
                choice = choose_mturk_packaging(reward, slots, masters=masters)
                saving += choice.saving
                for size in choice.chosen.assignments_per_hit:
                    hits.append(
                        PlannedHit(hit_token(batch.batch_id, refs, len(hits)), refs, size, reward)
                    )
                    cost += mturk_hit_cost(reward, size, masters).total
        return Plan(tuple(hits), cost, saving, cost + saving)

    # --- publishing ------------------------------------------------------------

    def publish(self, batch: BatchSpec) -> SubmissionRef:
        """Create the batch's HITs (idempotent per batch); refuse what the balance cannot pay."""
        plan = self.plan(batch)
        existing: dict[str, str] | None = None
        available = self.balance()
        if plan.cost > available:
            # A retried publish finds HITs it made already; their money is escrowed.
            existing = self._hits_by_annotation()
            missing = sum(
                (
                    mturk_hit_cost(
                        hit.reward, hit.max_assignments, bool(self.setting("masters"))
                    ).total
                    for hit in plan.hits
                    if hit.token not in existing
                ),
                Decimal(0),
            )
            if missing > available:
                raise InsufficientBalanceError(
                    f"the MTurk balance ({format_amount(available)} USD) cannot pay batch "
                    f"{batch.batch_id}: {format_amount(missing)} USD of rewards and fees",
                    details={"balance": format_amount(available), "needed": format_amount(missing)},
                )
        hit_types = {
            reward: self.hit_type(batch, reward)
            for reward in sorted({hit.reward for hit in plan.hits})
        }
        created = []
        for hit in plan.hits:
            question = self._question(batch, hit.task_refs)
            hit_id, existing = self._create_hit(hit_types[hit.reward], hit, question, existing)
            created.append(_hit_record(hit_id, hit))
        packaging = {
            "hits": len(plan.hits),
            "cost": format_amount(plan.cost),
            "cost_without_split": format_amount(plan.cost_unsplit),
            "saving": format_amount(plan.saving),
        }
        if plan.saving > 0:
            log.info(
                "mturk packaging saved money",
                extra={"batch_id": batch.batch_id, **packaging},
            )
        types = sorted(hit_types.values())
        return SubmissionRef(
            batch_id=batch.batch_id,
            external_ref=",".join(types)[:255] or None,
            state={
                "hit_type_ids": types,
                "masters": bool(self.setting("masters")),
                "sandbox": self.sandbox,
                "hits": created,
                "packaging": packaging,
            },
        )

    def add_hit(
        self, batch: BatchSpec, task_refs: Sequence[str], max_assignments: int, *, part: int
    ) -> dict[str, Any]:
        """Create one more HIT for some of a batch's items (a top-up); return its record.

        `part` numbers the batch's HITs (the next after those it has), so the token is
        deterministic: a retry after a lost response finds the HIT instead of making another.
        """
        refs = tuple(task_refs)
        reward = batch.reward * len(refs)
        hit = PlannedHit(hit_token(batch.batch_id, refs, part), refs, max_assignments, reward)
        hit_id, _ = self._create_hit(
            self.hit_type(batch, reward), hit, self._question(batch, refs), None
        )
        return _hit_record(hit_id, hit)

    def _question(self, batch: BatchSpec, task_refs: Sequence[str]) -> str:
        data = {task.task_ref: task.data for task in batch.tasks}
        return render_question(
            title=batch.title,
            instructions=batch.instructions,
            labels=batch.labels,
            tasks=[(ref, data[ref]) for ref in task_refs],
            sandbox=self.sandbox,
        )

    def hit_type(self, batch: BatchSpec, reward: Decimal) -> str:
        """Register (or find: MTurk returns the same id for the same values) the HIT type."""
        requirements = [
            {
                "QualificationTypeId": self.block_qualification(),
                "Comparator": "DoesNotExist",
                "ActionsGuarded": "DiscoverPreviewAndAccept",
            }
        ]
        if self.setting("masters"):
            requirements.append(
                {
                    "QualificationTypeId": MASTERS_QUALIFICATION[self.sandbox],
                    "Comparator": "Exists",
                    "ActionsGuarded": "Accept",
                }
            )
        keywords = f"{self.setting('keywords')}, quorum-project-{batch.project_id}"
        response = self.call(
            "CreateHITType",
            Title=batch.title[:128] or f"Quorum project {batch.project_id}",
            Description=(batch.instructions or batch.title)[:2000],
            Keywords=keywords[:1000],
            Reward=format_amount(reward),
            AssignmentDurationInSeconds=self.setting("assignment_duration_s"),
            AutoApprovalDelayInSeconds=self.setting("auto_approval_delay_s"),
            QualificationRequirements=requirements,
        )
        return str(response["HITTypeId"])

    def _create_hit(
        self, hit_type_id: str, hit: PlannedHit, question: str, existing: dict[str, str] | None
    ) -> tuple[str, dict[str, str] | None]:
        if existing is not None and hit.token in existing:
            return existing[hit.token], existing
        params = {
            "HITTypeId": hit_type_id,
            "MaxAssignments": hit.max_assignments,
            "LifetimeInSeconds": self.setting("lifetime_s"),
            "Question": question,
            "RequesterAnnotation": hit.token,
            "UniqueRequestToken": hit.token,
        }
        try:
            return str(self.call("CreateHITWithHITType", **params)["HIT"]["HITId"]), existing
        except MTurkRequestError as exc:
            if not _is_duplicate(exc):
                raise
            hit_id = self._hit_from_message(exc.message, hit.token)
            if hit_id is None:
                existing = self._hits_by_annotation()
                hit_id = existing.get(hit.token)
            if hit_id is None:
                raise
            return hit_id, existing

    def _hit_from_message(self, message: str, token: str) -> str | None:
        for candidate in HIT_ID.findall(message):
            try:
                hit = self.call("GetHIT", HITId=candidate)["HIT"]
            except MTurkRequestError:
                continue
            if hit.get("RequesterAnnotation") == token:
                return str(candidate)
        return None

    def _hits_by_annotation(self) -> dict[str, str]:
        """Map RequesterAnnotation (our token) -> HITId over the account's HITs."""
        return {
            hit["RequesterAnnotation"]: hit["HITId"]
            for hit in self.pages("ListHITs", "HITs")
            if str(hit.get("RequesterAnnotation", "")).startswith("quorum-")
        }

    def block_qualification(self) -> str:
        """Return the id of the workforce's block qualification, creating it once.

        The id is kept per process and endpoint; a name that exists already (another
        process made it) is looked up with ListQualificationTypes.
        """
        name = str(self.setting("block_qualification_name"))
        key = (self.setting("endpoint_url") or ENDPOINTS[self.sandbox], name)
        if key in _QUALIFICATIONS:
            return _QUALIFICATIONS[key]
        try:
            created = self.call(
                "CreateQualificationType",
                Name=name,
                Description="Workers blocked by Quorum's quality checks",
                QualificationTypeStatus="Active",
            )
            found: str | None = str(created["QualificationType"]["QualificationTypeId"])
        except MTurkRequestError as exc:
            if "alreadyexists" not in str(exc.details.get("turk_error_code", "")).lower():
                raise
            found = self._find_qualification(name)
            if found is None:
                raise
        assert found is not None
        _QUALIFICATIONS[key] = found
        return found

    def _find_qualification(self, name: str) -> str | None:
        for qualification in self.pages(
            "ListQualificationTypes",
            "QualificationTypes",
            Query=name,
            MustBeRequestable=False,
            MustBeOwnedByCaller=True,
        ):
            if qualification.get("Name") == name:
                return str(qualification["QualificationTypeId"])
        return None

    # --- collecting ------------------------------------------------------------

    def assignments(
        self, ref: SubmissionRef, statuses: Sequence[str] = ASSIGNMENT_STATUSES
    ) -> list[MTurkAssignment]:
        """Return every assignment of the batch's HITs in `statuses`, all pages, answers read."""
        found = []
        for hit in ref.state.get("hits", []):
            for raw in self.pages(
                "ListAssignmentsForHIT",
                "Assignments",
                HITId=hit["hit_id"],
                AssignmentStatuses=list(statuses),
            ):
                found.append(self._assignment(raw, hit))
        return found

    def assignment(self, assignment_id: str) -> MTurkAssignment:
        """Return one assignment with its HIT's reward and MaxAssignments (GetAssignment)."""
        response = self.call("GetAssignment", AssignmentId=assignment_id)
        hit = response.get("HIT", {})
        return self._assignment(
            response["Assignment"],
            {
                "hit_id": hit.get("HITId", response["Assignment"].get("HITId")),
                "tasks": [],
                "max_assignments": hit.get("MaxAssignments"),
                "reward": hit.get("Reward"),
            },
        )

    def _assignment(self, raw: Mapping[str, Any], hit: Mapping[str, Any]) -> MTurkAssignment:
        assignment_id = str(raw["AssignmentId"])
        worker = str(raw["WorkerId"])
        submitted = _utc(raw.get("SubmitTime")) or datetime.now(UTC)
        accepted = _utc(raw.get("AcceptTime"))
        spent = None if accepted is None else int((submitted - accepted).total_seconds() * 1000)
        tasks = list(hit.get("tasks", []))
        readable = True
        try:
            labels = labels_by_task(parse_answers(raw.get("Answer") or ""), tasks)
        except AnswerFormatError:
            log.warning("unreadable mturk answer", extra={"assignment_id": assignment_id})
            labels, readable = {}, False
        answers = tuple(
            CollectedAnswer(
                external_id=assignment_id if len(tasks) == 1 else f"{assignment_id}:{task_ref}",
                task_ref=task_ref,
                worker_ref=worker,
                label=label,
                submitted_at=submitted,
                time_spent_ms=spent,
            )
            for task_ref, label in labels.items()
        )
        return MTurkAssignment(
            assignment_id=assignment_id,
            hit_id=str(hit.get("hit_id") or raw.get("HITId")),
            worker_ref=worker,
            status=str(raw.get("AssignmentStatus", "Submitted")),
            answers=answers,
            reward=None if hit.get("reward") is None else Decimal(str(hit["reward"])),
            max_assignments=hit.get("max_assignments"),
            is_readable=readable,
        )

    def collect(self, ref: SubmissionRef) -> list[CollectedAnswer]:
        """Return the answers of the batch's submitted, not yet reviewed assignments.

        Reviewed assignments (approved or rejected on MTurk) belong to the review job
        (orchestrator.services.mturk_review), which stores their answers together with
        the decision, so an answer is never stored after its assignment was settled.
        """
        return [
            answer
            for found in self.assignments(ref, statuses=("Submitted",))
            for answer in found.answers
        ]

    # --- reviewing, blocking, paying ---------------------------------------------

    def approve(self, assignment_id: str, feedback: str = "") -> None:
        """Approve an assignment (MTurk pays the reward and takes its fee now)."""
        params = {"RequesterFeedback": feedback[:1024]} if feedback else {}
        self.call("ApproveAssignment", AssignmentId=assignment_id, **params)

    def reject(self, assignment_id: str, feedback: str) -> None:
        """Reject an assignment with the reason the worker will read."""
        self.call("RejectAssignment", AssignmentId=assignment_id, RequesterFeedback=feedback[:1024])

    def review(self, answer_external_id: str, *, accept: bool, feedback: str = "") -> None:
        """Approve or reject the assignment an answer came in (reviews are per assignment)."""
        assignment_id = assignment_of(answer_external_id)
        if accept:
            self.approve(assignment_id, feedback)
        else:
            self.reject(assignment_id, feedback or "Rejected by quality review.")

    def block_worker(self, worker_ref: str, *, reason: str) -> None:
        """Block a worker: CreateWorkerBlock and the block qualification its HIT types exclude."""
        self.call("CreateWorkerBlock", WorkerId=worker_ref, Reason=reason[:1024] or "quality")
        self.call(
            "AssociateQualificationWithWorker",
            QualificationTypeId=self.block_qualification(),
            WorkerId=worker_ref,
            IntegerValue=1,
            SendNotification=False,
        )

    def pay_bonus(
        self,
        worker_ref: str,
        amount: Decimal,
        *,
        reason: str,
        token: str,
        answer_refs: Sequence[str] = (),
    ) -> None:
        """SendBonus with `token` as UniqueRequestToken; a repeat of a paid token is success.

        MTurk ties a bonus to one of the worker's assignments: the first of `answer_refs`
        (Quorum's records of the worker's answers, whose external ids are assignment ids).
        """
        if not answer_refs:
            raise MTurkRequestError(
                f"worker {worker_ref} has no assignment of ours to attach a bonus to",
                details={"worker_ref": ["no collected assignment to attach the bonus to"]},
            )
        try:
            self.call(
                "SendBonus",
                WorkerId=worker_ref,
                BonusAmount=format_amount(amount),
                AssignmentId=assignment_of(answer_refs[0]),
                Reason=reason[:1024],
                UniqueRequestToken=token[:64],
            )
        except MTurkRequestError as exc:
            if not _is_duplicate(exc):
                raise

    def extend_hit(self, hit_id: str, count: int, *, token: str) -> None:
        """Add assignments to a HIT (CreateAdditionalAssignmentsForHIT); a repeat is success."""
        try:
            self.call(
                "CreateAdditionalAssignmentsForHIT",
                HITId=hit_id,
                NumberOfAdditionalAssignments=count,
                UniqueRequestToken=token[:64],
            )
        except MTurkRequestError as exc:
            if not _is_duplicate(exc):
                raise

    def close_hits(self, ref: SubmissionRef) -> bool:
        """Expire the batch's HITs now and delete those MTurk lets go; True when all are gone.

        A HIT with assignments still to review cannot be deleted yet; call again later.
        """
        gone = True
        for hit in ref.state.get("hits", []):
            try:
                self.call("UpdateExpirationForHIT", HITId=hit["hit_id"], ExpireAt=datetime.now(UTC))
            except MTurkRequestError as exc:
                if _is_missing(exc):
                    continue  # deleted already
                raise
            try:
                self.call("DeleteHIT", HITId=hit["hit_id"])
            except MTurkRequestError as exc:
                if not _is_missing(exc):
                    gone = False
        return gone

    def cancel(self, ref: SubmissionRef) -> None:
        """Call nothing: the review job expires and deletes a cancelled batch's HITs.

        `cancel` runs inside the cancelling request's transaction, where no MTurk call
        belongs; `review_mturk` closes the HITs of cancelled batches outside any
        transaction on its next run (`close_hits`), retrying until they are gone.
        """

    def workers(self) -> list[WorkerInfo]:
        """Report the workers the account has blocked (MTurk lists no other workers)."""
        return [
            WorkerInfo(block["WorkerId"], status="blocked", details={"reason": block.get("Reason")})
            for block in self.pages("ListWorkerBlocks", "WorkerBlocks")
        ]


def _hit_record(hit_id: str, hit: PlannedHit) -> dict[str, Any]:
    """The batch's record of one HIT (kept in its connector state)."""
    return {
        "hit_id": hit_id,
        "tasks": list(hit.task_refs),
        "max_assignments": hit.max_assignments,
        "reward": format_amount(hit.reward),
    }


def _error_parts(exc: ClientError) -> tuple[str, str, str]:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    turk = str(exc.response.get("TurkErrorCode") or error.get("TurkErrorCode") or "")
    return code, turk, str(error.get("Message", ""))


def _is_throttle(code: str, turk_code: str, message: str) -> bool:
    return (
        code in THROTTLE_CODES
        or "throttl" in turk_code.lower()
        or "rate exceeded" in message.lower()
    )


def _is_duplicate(exc: MTurkRequestError) -> bool:
    turk = str(exc.details.get("turk_error_code") or "")
    text = f"{turk} {exc.message}".lower()
    return (
        "hitalreadyexists" in text
        or "duplicaterequest" in text
        or "unique request token" in text
        or "uniquerequesttoken" in text
    )


def _is_missing(exc: MTurkRequestError) -> bool:
    text = f"{exc.details.get('turk_error_code') or ''} {exc.message}".lower()
    return "does not exist" in text or "doesnotexist" in text or "not found" in text


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
