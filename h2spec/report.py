"""Text report (one line per case, grouped by section) and JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import TextIO

from h2spec.catalogue import SPEC_TITLES, all_groups
from h2spec.runner import FAILED, PASSED, SKIPPED, Result

STATUS_LABELS = {PASSED: "[PASS]", FAILED: "[FAIL]", SKIPPED: "[SKIP]"}
DETAIL_INDENT = " " * 9


def summary_line(results: Iterable[Result]) -> str:
    """`N tests, N passed, N skipped, N failed` (h2spec's closing line)."""
    results = list(results)
    count = {status: sum(1 for r in results if r.status == status) for status in STATUS_LABELS}
    return (
        f"{len(results)} tests, {count[PASSED]} passed, "
        f"{count[SKIPPED]} skipped, {count[FAILED]} failed"
    )


def case_line(result: Result) -> str:
    line = f"  {STATUS_LABELS[result.status]} {result.case.id}: {result.case.description}"
    if result.status == SKIPPED and result.message:
        line += f" (skipped: {result.message})"
    return line


def failure_details(result: Result) -> list[str]:
    """Expected vs actual (or the error) under a failed case."""
    lines: list[str] = []
    if result.expected:
        lines.append(f"{DETAIL_INDENT}expected: {result.expected[0]}")
        lines.extend(f"{DETAIL_INDENT}      or: {option}" for option in result.expected[1:])
        lines.append(f"{DETAIL_INDENT}  actual: {result.actual}")
    if result.message:
        lines.append(f"{DETAIL_INDENT}   error: {result.message}")
    return lines


_GROUP_TITLES: dict[str, str] = {}


def group_title(group_id: str) -> str:
    if not _GROUP_TITLES:
        _GROUP_TITLES.update({g.id: g.title for g in all_groups()})
    return _GROUP_TITLES.get(group_id, "")


class TextReporter:
    """Writes results as they come, with spec and section headings."""

    def __init__(self, out: TextIO, *, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose
        self._spec: str | None = None
        self._group: str | None = None

    def add(self, result: Result) -> None:
        case = result.case
        if case.spec != self._spec:
            if self._spec is not None:
                self.out.write("\n")
            self.out.write(f"{SPEC_TITLES[case.spec]}\n")
            self._spec = case.spec
            self._group = None
        if case.group_id != self._group:
            self.out.write(f"{case.group_id}. {group_title(case.group_id)}\n")
            self._group = case.group_id
        self.out.write(case_line(result) + "\n")
        if result.status == FAILED:
            for line in failure_details(result):
                self.out.write(line + "\n")
        for note in result.notes:
            self.out.write(f"{DETAIL_INDENT}    note: {note}\n")
        if self.verbose:
            self.out.write(f"{DETAIL_INDENT}requirement: {case.requirement}\n")
            for entry in result.log:
                self.out.write(f"{DETAIL_INDENT}  | {entry}\n")
        self.out.flush()

    def finish(self, results: list[Result], elapsed: float) -> None:
        failed = [r for r in results if r.status == FAILED]
        self.out.write("\n")
        if failed:
            self.out.write("Failures:\n")
            for result in failed:
                self.out.write(f"  {result.case.id}: {result.case.description}\n")
                for line in failure_details(result):
                    self.out.write(line + "\n")
            self.out.write("\n")
        self.out.write(f"Finished in {elapsed:.2f} seconds\n")
        self.out.write(summary_line(results) + "\n")
        self.out.flush()


def junit_xml(results: list[Result], elapsed: float = 0.0) -> ET.ElementTree:
    """JUnit XML: one <testsuite> per section, one <testcase> per case."""

    def counts(items: list[Result]) -> dict[str, str]:
        return {
            "tests": str(len(items)),
            "failures": str(sum(1 for r in items if r.status == FAILED)),
            "skipped": str(sum(1 for r in items if r.status == SKIPPED)),
            "errors": "0",
        }

    root = ET.Element("testsuites", name="h2spec", time=f"{elapsed:.3f}", **counts(results))
    by_group: dict[str, list[Result]] = {}
    for result in results:
        by_group.setdefault(result.case.group_id, []).append(result)
    for suite_id, items in by_group.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"{suite_id}. {group_title(suite_id)}",
            package=items[0].case.spec,
            time=f"{sum(r.duration for r in items):.3f}",
            **counts(items),
        )
        for result in items:
            testcase = ET.SubElement(
                suite,
                "testcase",
                classname=suite_id,
                name=f"{result.case.id}: {result.case.description}",
                time=f"{result.duration:.3f}",
            )
            if result.status == FAILED:
                message = result.message or f"expected {result.expected[0]}, got {result.actual}"
                failure = ET.SubElement(testcase, "failure", message=message, type="AssertionError")
                failure.text = "\n".join(
                    [f"requirement: {result.case.requirement}", *(line.strip() for line in failure_details(result))]
                )
            elif result.status == SKIPPED:
                ET.SubElement(testcase, "skipped", message=result.message)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(results: list[Result], path: str, elapsed: float = 0.0) -> None:
    junit_xml(results, elapsed).write(path, encoding="utf-8", xml_declaration=True)
