"""MTurk question forms: render items as an HTMLQuestion, read the QuestionFormAnswers back.

Every value that reaches the page (instructions, item data, labels) is HTML-escaped,
and the page sits in a CDATA section whose terminator is split wherever it occurs,
so no item can break out of the form. Each item is one radio group named
`answer_field(task_ref)`; the worker's choice comes back in the assignment's
QuestionFormAnswers XML under that QuestionIdentifier.

The answers XML comes from MTurk but carries text workers typed, so it is parsed
with defusedxml: no DTDs, no entities, no external references.
"""

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

HTML_QUESTION_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
)
SUBMIT_URLS = {
    True: "https://workersandbox.mturk.com/mturk/externalSubmit",
    False: "https://www.mturk.com/mturk/externalSubmit",
}
FIELD_PREFIX = "label_"
FRAME_HEIGHT = 0  # 0: MTurk sizes the frame to the page
# The page reads MTurk's assignmentId from its URL; in preview it is ASSIGNMENT_ID_NOT_AVAILABLE.
_SCRIPT = """<script>
(function () {
  var params = new URLSearchParams(window.location.search);
  var id = params.get("assignmentId") || "ASSIGNMENT_ID_NOT_AVAILABLE";
  document.getElementById("assignmentId").value = id;
  if (id === "ASSIGNMENT_ID_NOT_AVAILABLE") {
    document.getElementById("submitButton").disabled = true;
  }
})();
</script>"""


class AnswerFormatError(ValueError):
    """An assignment's answer document is not QuestionFormAnswers XML we can read."""


def answer_field(task_ref: str) -> str:
    """Return the form field (QuestionIdentifier) that carries the label of one item."""
    return f"{FIELD_PREFIX}{task_ref}"


def _item_html(task_ref: str, data: Mapping[str, Any], labels: Sequence[str]) -> str:
    field = html.escape(answer_field(task_ref), quote=True)
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_text(value))}</td></tr>"
        for key, value in data.items()
    )
    choices = "".join(
        f'<label><input type="radio" name="{field}" value="{html.escape(label, quote=True)}"'
        f" required> {html.escape(label)}</label> "
        for label in labels
    )
    return f'<fieldset><table class="item">{rows}</table><p>{choices}</p></fieldset>'


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render_question(
    *,
    title: str,
    instructions: str,
    labels: Sequence[str],
    tasks: Sequence[tuple[str, Mapping[str, Any]]],
    sandbox: bool,
) -> str:
    """Return the HTMLQuestion XML for one HIT: the items of `tasks` with a radio per label."""
    items = "".join(_item_html(task_ref, data, labels) for task_ref, data in tasks)
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>"
        f'<form name="mturk_form" method="post" id="mturk_form" '
        f'action="{SUBMIT_URLS[sandbox]}">'
        '<input type="hidden" value="" name="assignmentId" id="assignmentId">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(instructions)}</p>{items}"
        '<input type="submit" id="submitButton" value="Submit"></form>'
        f"{_SCRIPT}</body></html>"
    )
    # A CDATA section ends at the first "]]>": split any occurrence into two sections.
    cdata = page.replace("]]>", "]]]]><![CDATA[>")
    return (
        f'<HTMLQuestion xmlns="{HTML_QUESTION_NS}">'
        f"<HTMLContent><![CDATA[{cdata}]]></HTMLContent>"
        f"<FrameHeight>{FRAME_HEIGHT}</FrameHeight></HTMLQuestion>"
    )


def parse_answers(document: str) -> dict[str, str]:
    """Return QuestionIdentifier -> FreeText from a QuestionFormAnswers document.

    Raises:
        AnswerFormatError: The document is not well-formed XML, or uses DTDs or entities.
    """
    try:
        root = ElementTree.fromstring(document, forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise AnswerFormatError(f"unreadable answer document: {exc}") from exc
    answers: dict[str, str] = {}
    for answer in root:
        if _local(answer.tag) != "Answer":
            continue
        fields = {_local(child.tag): (child.text or "") for child in answer}
        identifier = fields.get("QuestionIdentifier")
        if identifier:
            answers[identifier] = fields.get("FreeText", "")
    return answers


def labels_by_task(answers: Mapping[str, str], task_refs: Sequence[str]) -> dict[str, str]:
    """Pick the label of each of a HIT's items out of its parsed answers (missing ones left out)."""
    found = {}
    for task_ref in task_refs:
        value = answers.get(answer_field(task_ref))
        if value:
            found[task_ref] = value
    return found


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
