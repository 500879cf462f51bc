"""The local MTurk protocol server, driven through boto3's real MTurk client."""

import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.mturk_server import ANSWER_NAMESPACE, MTurkTestServer, WorkerRefused

QUESTION = (
    '<HTMLQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/'
    '2011-11-11/HTMLQuestion.xsd"><HTMLContent><![CDATA[<p>cat?</p>]]></HTMLContent>'
    "<FrameHeight>400</FrameHeight></HTMLQuestion>"
)
MASTERS = "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"


def make_client(server: MTurkTestServer, max_attempts: int = 4) -> Any:
    """Return boto3's MTurk client for the server, retrying in standard mode."""
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        read_timeout=5,
        connect_timeout=5,
    )
    return boto3.client(
        "mturk",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )


@pytest.fixture
def server() -> Iterator[MTurkTestServer]:
    with MTurkTestServer(balance=Decimal("100.00")) as running:
        yield running


@pytest.fixture
def mturk(server: MTurkTestServer) -> Any:
    return make_client(server)


def create_hit(mturk: Any, reward: str = "0.05", max_assignments: int = 3, **extra: Any) -> dict:
    """Create a HIT through CreateHIT and return it."""
    params = {
        "Title": "Is it a cat?",
        "Description": "Look at the picture",
        "Reward": reward,
        "AssignmentDurationInSeconds": 600,
        "LifetimeInSeconds": 3600,
        "AutoApprovalDelayInSeconds": 86400,
        "MaxAssignments": max_assignments,
        "Question": QUESTION,
        **extra,
    }
    return mturk.create_hit(**params)["HIT"]


def turk_error(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["TurkErrorCode"]


def test_lifecycle_through_boto3(server: MTurkTestServer, mturk: Any) -> None:
    type_params = {
        "Title": "Is it a cat?",
        "Description": "Look at the picture",
        "Reward": "0.05",
        "AssignmentDurationInSeconds": 600,
        "AutoApprovalDelayInSeconds": 86400,
        "Keywords": "image, cat",
    }
    hit_type_id = mturk.create_hit_type(**type_params)["HITTypeId"]
    assert mturk.create_hit_type(**type_params)["HITTypeId"] == hit_type_id
    assert mturk.create_hit_type(**{**type_params, "Reward": "0.06"})["HITTypeId"] != hit_type_id

    hit = mturk.create_hit_with_hit_type(
        HITTypeId=hit_type_id,
        MaxAssignments=3,
        LifetimeInSeconds=3600,
        Question=QUESTION,
        RequesterAnnotation="batch-1",
        UniqueRequestToken="batch-1-hit-0",
    )["HIT"]
    assert hit["HITStatus"] == "Assignable"
    assert hit["Reward"] == "0.05"
    assert isinstance(hit["Expiration"], datetime)
    # Nothing charged yet; reward plus the 20% fee ($0.01) of three assignments held back.
    assert mturk.get_account_balance()["AvailableBalance"] == "99.82"
    assert server.total_debited() == Decimal("0")

    answers = {"label": "cat & <dog>"}
    first = server.submit_assignment(hit["HITId"], "WORKER1", answers)
    with pytest.raises(WorkerRefused):
        server.submit_assignment(hit["HITId"], "WORKER1", answers)
    second = server.submit_assignment(hit["HITId"], "WORKER2", {"label": "dog"})
    third = server.submit_assignment(hit["HITId"], "WORKER3", {"label": "cat"}, seconds=90)
    with pytest.raises(WorkerRefused):
        server.submit_assignment(hit["HITId"], "WORKER4", {"label": "cat"})
    assert mturk.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Reviewable"

    page = mturk.list_assignments_for_hit(HITId=hit["HITId"], MaxResults=2)
    assert page["NumResults"] == 2
    rest = mturk.list_assignments_for_hit(
        HITId=hit["HITId"], MaxResults=2, NextToken=page["NextToken"]
    )
    assert rest["NumResults"] == 1 and "NextToken" not in rest
    listed = page["Assignments"] + rest["Assignments"]
    assert [a["AssignmentId"] for a in listed] == [first, second, third]
    third_assignment = listed[2]
    assert third_assignment["SubmitTime"] - third_assignment["AcceptTime"] == timedelta(seconds=90)

    got = mturk.get_assignment(AssignmentId=first)
    assert got["HIT"]["HITId"] == hit["HITId"]
    answer = ElementTree.fromstring(got["Assignment"]["Answer"])
    ns = {"a": ANSWER_NAMESPACE}
    assert answer.findtext("a:Answer/a:QuestionIdentifier", namespaces=ns) == "label"
    assert answer.findtext("a:Answer/a:FreeText", namespaces=ns) == "cat & <dog>"

    mturk.approve_assignment(AssignmentId=first, RequesterFeedback="thanks")
    mturk.reject_assignment(AssignmentId=second, RequesterFeedback="wrong label")
    mturk.approve_assignment(AssignmentId=third)
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        mturk.approve_assignment(AssignmentId=first)
    assert turk_error(excinfo) == "AWS.MechanicalTurk.InvalidAssignmentState"
    submitted = mturk.list_assignments_for_hit(HITId=hit["HITId"], AssignmentStatuses=["Rejected"])
    assert [a["AssignmentId"] for a in submitted["Assignments"]] == [second]
    assert mturk.get_hit(HITId=hit["HITId"])["HIT"]["NumberOfAssignmentsCompleted"] == 3

    for _ in range(2):  # a retried bonus with the same token pays once
        try:
            mturk.send_bonus(
                WorkerId="WORKER1",
                BonusAmount="0.50",
                AssignmentId=first,
                Reason="careful work",
                UniqueRequestToken="bonus-1",
            )
        except mturk.exceptions.RequestError as error:
            assert error.response["TurkErrorCode"] == "AWS.MechanicalTurk.DuplicateRequest"
            assert "has already been processed" in error.response["Error"]["Message"]
    bonuses = mturk.list_bonus_payments(HITId=hit["HITId"])["BonusPayments"]
    assert [(b["WorkerId"], b["BonusAmount"]) for b in bonuses] == [("WORKER1", "0.50")]

    assert [(d["kind"], d["amount"], d["worker_id"]) for d in server.debits()] == [
        ("reward", Decimal("0.05"), "WORKER1"),
        ("fee", Decimal("0.01"), "WORKER1"),
        ("reward", Decimal("0.05"), "WORKER3"),
        ("fee", Decimal("0.01"), "WORKER3"),
        ("bonus", Decimal("0.50"), "WORKER1"),
        ("bonus_fee", Decimal("0.10"), "WORKER1"),
    ]
    assert server.total_debited() == Decimal("0.72")
    assert mturk.get_account_balance()["AvailableBalance"] == "99.28"

    mturk.delete_hit(HITId=hit["HITId"])
    assert mturk.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Disposed"
    assert mturk.list_hits()["NumResults"] == 0
    assert server.hits()[0]["UniqueRequestToken"] == "batch-1-hit-0"


def test_list_hits_pages(server: MTurkTestServer, mturk: Any) -> None:
    created = [create_hit(mturk, max_assignments=1)["HITId"] for _ in range(5)]
    seen: list[str] = []
    params: dict[str, Any] = {"MaxResults": 2}
    pages = 0
    while True:
        page = mturk.list_hits(**params)
        pages += 1
        seen += [hit["HITId"] for hit in page["HITs"]]
        if "NextToken" not in page:
            break
        params["NextToken"] = page["NextToken"]
    assert (pages, seen) == (3, created)
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        mturk.list_hits(MaxResults=101)
    assert turk_error(excinfo) == "AWS.ParameterOutOfRange"


@pytest.mark.parametrize(
    ("reward", "max_assignments", "masters", "fee"),
    [
        ("0.10", 9, False, "0.02"),  # 20%
        ("0.10", 10, False, "0.04"),  # 40% from 10 assignments on
        ("0.10", 1, True, "0.03"),  # 25% with Masters: 0.025 rounds half-up
        ("0.20", 10, True, "0.09"),  # 45%
        ("0.01", 1, False, "0.01"),  # at least a cent
    ],
)
def test_fees_escrow_and_debits_to_the_cent(
    server: MTurkTestServer, mturk: Any, reward: str, max_assignments: int, masters: bool, fee: str
) -> None:
    requirements = [{"QualificationTypeId": MASTERS, "Comparator": "Exists"}] if masters else []
    hit = create_hit(
        mturk,
        reward=reward,
        max_assignments=max_assignments,
        QualificationRequirements=requirements,
    )
    unit = Decimal(reward) + Decimal(fee)
    assert server.available_balance() == Decimal("100.00") - max_assignments * unit
    if masters:
        with pytest.raises(WorkerRefused):
            server.submit_assignment(hit["HITId"], "NOVICE", {"a": "1"})
        server.grant_masters("MASTER")
    assignment_id = server.submit_assignment(hit["HITId"], "MASTER", {"a": "1"})
    mturk.approve_assignment(AssignmentId=assignment_id)
    assert [(d["kind"], d["amount"]) for d in server.debits()] == [
        ("reward", Decimal(reward)),
        ("fee", Decimal(fee)),
    ]
    balance = mturk.get_account_balance()["AvailableBalance"]
    assert Decimal(balance) == Decimal("100.00") - max_assignments * unit


def test_bonus_fee_has_a_one_cent_floor(server: MTurkTestServer, mturk: Any) -> None:
    hit = create_hit(mturk, max_assignments=1)
    assignment_id = server.submit_assignment(hit["HITId"], "W", {"a": "1"})
    mturk.send_bonus(WorkerId="W", BonusAmount="0.03", AssignmentId=assignment_id, Reason="r")
    assert [(d["kind"], d["amount"]) for d in server.debits()] == [
        ("bonus", Decimal("0.03")),
        ("bonus_fee", Decimal("0.01")),
    ]
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        mturk.send_bonus(WorkerId="W", BonusAmount="0.005", AssignmentId=assignment_id, Reason="r")
    assert turk_error(excinfo) == "AWS.ParameterOutOfRange"


def test_money_errors(server: MTurkTestServer, mturk: Any) -> None:
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        create_hit(mturk, reward="0.015")
    assert turk_error(excinfo) == "AWS.ParameterOutOfRange"
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        create_hit(mturk, reward="30.00", max_assignments=3)  # 3 x 36.00 > 100.00
    assert turk_error(excinfo) == "AWS.MechanicalTurk.InsufficientFunds"
    assert "insufficient funds" in excinfo.value.response["Error"]["Message"]
    assert server.hits() == []
    assert server.available_balance() == Decimal("100.00")


def test_duplicate_token_on_create_names_the_existing_hit(
    server: MTurkTestServer, mturk: Any
) -> None:
    hit = create_hit(mturk, UniqueRequestToken="project-7-batch-3")
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        create_hit(mturk, max_assignments=5, UniqueRequestToken="project-7-batch-3")
    assert turk_error(excinfo) == "AWS.MechanicalTurk.HitAlreadyExists"
    assert hit["HITId"] in excinfo.value.response["Error"]["Message"]
    assert [h["HITId"] for h in server.hits()] == [hit["HITId"]]


def test_blocks_and_qualifications(server: MTurkTestServer, mturk: Any) -> None:
    done_before = mturk.create_qualification_type(
        Name="worked on project 7",
        Description="Keeps repeat workers out",
        QualificationTypeStatus="Active",
    )["QualificationType"]["QualificationTypeId"]
    skill = mturk.create_qualification_type(
        Name="cat skill", Description="Accuracy on cat gold", QualificationTypeStatus="Active"
    )["QualificationType"]["QualificationTypeId"]
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        mturk.create_qualification_type(
            Name="cat skill", Description="again", QualificationTypeStatus="Active"
        )
    assert turk_error(excinfo) == "AWS.MechanicalTurk.QualificationTypeAlreadyExists"

    hit = create_hit(
        mturk,
        max_assignments=5,
        QualificationRequirements=[
            {"QualificationTypeId": done_before, "Comparator": "DoesNotExist"},
            {
                "QualificationTypeId": skill,
                "Comparator": "GreaterThanOrEqualTo",
                "IntegerValues": [80],
            },
        ],
    )
    mturk.associate_qualification_with_worker(QualificationTypeId=done_before, WorkerId="REPEAT")
    for worker, value in [("REPEAT", 95), ("WEAK", 50), ("GOOD", 90), ("BLOCKED", 99)]:
        mturk.associate_qualification_with_worker(
            QualificationTypeId=skill, WorkerId=worker, IntegerValue=value
        )
    mturk.create_worker_block(WorkerId="BLOCKED", Reason="failed gold")
    assert server.blocked_workers() == {"BLOCKED"}
    assert mturk.list_worker_blocks()["WorkerBlocks"] == [
        {"WorkerId": "BLOCKED", "Reason": "failed gold"}
    ]

    for worker in ("REPEAT", "WEAK", "BLOCKED", "NOBODY"):
        with pytest.raises(WorkerRefused):
            server.submit_assignment(hit["HITId"], worker, {"a": "1"})
    server.submit_assignment(hit["HITId"], "GOOD", {"a": "1"})

    mturk.delete_worker_block(WorkerId="BLOCKED", Reason="appeal granted")
    server.submit_assignment(hit["HITId"], "BLOCKED", {"a": "1"})
    mturk.disassociate_qualification_from_worker(QualificationTypeId=done_before, WorkerId="REPEAT")
    server.submit_assignment(hit["HITId"], "REPEAT", {"a": "1"})

    granted = mturk.list_workers_with_qualification_type(
        QualificationTypeId=skill, Status="Granted", MaxResults=100
    )
    assert {q["WorkerId"]: q["IntegerValue"] for q in granted["Qualifications"]} == {
        "REPEAT": 95,
        "WEAK": 50,
        "GOOD": 90,
        "BLOCKED": 99,
    }
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        create_hit(
            mturk,
            QualificationRequirements=[
                {"QualificationTypeId": "NOSUCHTYPE", "Comparator": "Exists"}
            ],
        )
    assert turk_error(excinfo) == "AWS.MechanicalTurk.QualificationTypeDoesNotExist"


def test_list_qualification_types_queries_and_pages(server: MTurkTestServer, mturk: Any) -> None:
    made = {
        name: mturk.create_qualification_type(
            Name=name, Description=description, QualificationTypeStatus="Active", **extra
        )["QualificationType"]["QualificationTypeId"]
        for name, description, extra in [
            ("Quorum blocked workers", "Blocked by quality checks", {}),
            ("cat skill", "Accuracy on cat gold", {"AutoGranted": True}),
            ("dog skill", "Accuracy on dog gold", {"Keywords": "quorum"}),
        ]
    }
    found = mturk.list_qualification_types(
        Query="QUORUM", MustBeRequestable=False, MustBeOwnedByCaller=True, MaxResults=1
    )
    assert [q["Name"] for q in found["QualificationTypes"]] == ["Quorum blocked workers"]
    rest = mturk.list_qualification_types(
        Query="QUORUM", MustBeRequestable=False, NextToken=found["NextToken"], MaxResults=1
    )
    assert [q["QualificationTypeId"] for q in rest["QualificationTypes"]] == [made["dog skill"]]
    assert "NextToken" not in rest
    requestable = mturk.list_qualification_types(MustBeRequestable=True)
    assert [q["Name"] for q in requestable["QualificationTypes"]] == ["cat skill"]
    # boto3 checks the required flag itself; the server refuses a raw request without it.
    status, body, _ = server.handle("ListQualificationTypes", {"Query": "x"})
    assert (status, body["TurkErrorCode"]) == (400, "AWS.MissingParameters")


def test_auto_approval_expiry_and_delete_rules(server: MTurkTestServer, mturk: Any) -> None:
    hit = create_hit(mturk, max_assignments=2, AutoApprovalDelayInSeconds=60)
    assignment_id = server.submit_assignment(hit["HITId"], "W1", {"a": "1"})
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        mturk.delete_hit(HITId=hit["HITId"])
    assert turk_error(excinfo) == "AWS.MechanicalTurk.InvalidHITState"

    server.advance(61)
    assignment = mturk.get_assignment(AssignmentId=assignment_id)["Assignment"]
    assert assignment["AssignmentStatus"] == "Approved"
    assert server.total_debited() == Decimal("0.06")
    # The second slot is still open and held back.
    assert server.available_balance() == Decimal("99.88")

    mturk.update_expiration_for_hit(HITId=hit["HITId"], ExpireAt=datetime(2015, 1, 1, tzinfo=UTC))
    assert mturk.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Reviewable"
    assert server.available_balance() == Decimal("99.94")
    with pytest.raises(WorkerRefused):
        server.submit_assignment(hit["HITId"], "W2", {"a": "1"})
    mturk.delete_hit(HITId=hit["HITId"])
    mturk.delete_hit(HITId=hit["HITId"])  # deleting again is harmless


def test_additional_assignments(server: MTurkTestServer, mturk: Any) -> None:
    hit = create_hit(mturk, max_assignments=1)
    server.submit_assignment(hit["HITId"], "W1", {"a": "1"})
    assert mturk.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Reviewable"
    for _ in range(2):
        try:
            mturk.create_additional_assignments_for_hit(
                HITId=hit["HITId"], NumberOfAdditionalAssignments=2, UniqueRequestToken="more-1"
            )
        except mturk.exceptions.RequestError as error:
            assert error.response["TurkErrorCode"] == "AWS.MechanicalTurk.DuplicateRequest"
    extended = mturk.get_hit(HITId=hit["HITId"])["HIT"]
    assert (extended["MaxAssignments"], extended["HITStatus"]) == (3, "Assignable")
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        mturk.create_additional_assignments_for_hit(
            HITId=hit["HITId"], NumberOfAdditionalAssignments=7
        )
    assert turk_error(excinfo) == "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease"


def test_accepted_assignment_is_pending_until_submitted(
    server: MTurkTestServer, mturk: Any
) -> None:
    hit = create_hit(mturk, max_assignments=1)
    accepted = server.accept_assignment(hit["HITId"], "W1")
    pending = mturk.get_hit(HITId=hit["HITId"])["HIT"]
    assert (pending["HITStatus"], pending["NumberOfAssignmentsPending"]) == ("Unassignable", 1)
    assert mturk.list_assignments_for_hit(HITId=hit["HITId"])["NumResults"] == 0
    assert server.submit_assignment(hit["HITId"], "W1", {"a": "1"}) == accepted
    assert mturk.get_hit(HITId=hit["HITId"])["HIT"]["HITStatus"] == "Reviewable"


def test_throttling_is_retried_then_succeeds(server: MTurkTestServer, mturk: Any) -> None:
    server.inject("GetAccountBalance", "throttle")
    response = mturk.get_account_balance()
    assert response["AvailableBalance"] == "100.00"
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert [operation for operation, _ in server.calls] == ["GetAccountBalance"] * 2

    server.inject("GetAccountBalance", "throttle")
    with pytest.raises(ClientError) as excinfo:
        make_client(server, max_attempts=0).get_account_balance()
    assert excinfo.value.response["Error"]["Code"] == "ThrottlingException"


def test_service_fault_surfaces_when_it_outlasts_the_retries(
    server: MTurkTestServer, mturk: Any
) -> None:
    server.inject("CreateHIT", "service_fault", times=10)
    with pytest.raises(mturk.exceptions.ServiceFault) as excinfo:
        create_hit(mturk)
    assert turk_error(excinfo) == "AWS.ServiceUnavailable"
    # botocore's max_attempts counts retries: one call plus four retries, none performed.
    assert len(server.calls) == 5
    assert server.hits() == []


def test_lost_response_then_retry_finds_the_hit_exists(server: MTurkTestServer, mturk: Any) -> None:
    server.inject("CreateHIT", "lost_response")
    with pytest.raises(mturk.exceptions.RequestError) as excinfo:
        create_hit(mturk, UniqueRequestToken="batch-9")
    assert turk_error(excinfo) == "AWS.MechanicalTurk.HitAlreadyExists"
    (hit,) = server.hits()
    assert hit["HITId"] in excinfo.value.response["Error"]["Message"]
    assert [operation for operation, _ in server.calls] == ["CreateHIT"] * 2


def test_concurrent_workers_never_overfill_a_hit(server: MTurkTestServer, mturk: Any) -> None:
    hit = create_hit(mturk, max_assignments=10)
    outcomes: list[bool] = []

    def work(worker: str) -> None:
        try:
            server.submit_assignment(hit["HITId"], worker, {"a": worker})
            outcomes.append(True)
        except WorkerRefused:
            outcomes.append(False)

    threads = [threading.Thread(target=work, args=(f"W{i}",)) for i in range(25)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        mturk.list_assignments_for_hit(HITId=hit["HITId"], MaxResults=100)
    for thread in threads:
        thread.join()
    assert outcomes.count(True) == 10
    assert mturk.list_assignments_for_hit(HITId=hit["HITId"], MaxResults=100)["NumResults"] == 10
