"""The scoring report (flows/render.py `score_markdown`): its table survives what cells hold."""
from __future__ import annotations

from tests.unit.test_batch import _output


def test_the_report_table_survives_pipes_and_newlines_in_cells():
    import re

    from flows.render import score_markdown

    report = score_markdown(_output(["a|b", "c\nd", "e"]), "b1", "3", "hash", top=3).splitlines()
    start = report.index("| declaration | risk | expected revenue | lane |") + 2
    rows = report[start:start + 3]
    assert len(rows) == 3 and all(r.startswith("| ") for r in rows), report
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row)[1:-1]) == 4, row
    assert rows[0].startswith("| a\\|b |")
    # The reasons in a list under the table, whole (a table cell clips them in Prefect's view), one item per row.
    reasons = report[report.index("Their reasons:") + 2:][:3]
    assert len(reasons) == 3 and all(r.startswith("- **") for r in reasons), reasons
