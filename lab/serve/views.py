"""What the API shows of a lab: its fields as docs/lab-server.md gives them, its results folder's
files (looked up by name among the folder's regular files, never joined into a path, no symlink
followed), the Wireshark display filters for its captures, and the class's results as CSV and as
JUnit XML."""
from __future__ import annotations

import csv
import io
import os
import stat
import time
from pathlib import Path
from typing import Any, Optional
from xml.etree import ElementTree as ET

# What to type in Wireshark's display filter bar to see what each exercise is about.
FILTERS = {
    "keepalive": "tcp.analysis.keep_alive || tcp.analysis.keep_alive_ack || tcp.flags.reset == 1",
    "window": "tcp.analysis.zero_window || tcp.analysis.zero_window_probe || tcp.analysis.window_update || tcp.analysis.window_full",
    "states": "tcp.flags.syn == 1 || tcp.flags.fin == 1 || tcp.flags.reset == 1",
    # the annotated capture (lab/report/annotate.py): the frames tcplab wrote its reading and verdicts on
    "annotated": 'frame.comment contains "tcplab"',
}
CAPTURE_SUFFIXES = (".pcap", ".pcapng")


def lab_json(lab: dict[str, Any], events: Optional[list[dict[str, Any]]] = None, queue_position: Optional[int] = None,
             brief: bool = False) -> dict[str, Any]:
    picture = lab.get("picture") or {}
    files = result_files(lab)
    out = {
        "id": lab["id"], "student": lab["student"], "exercise": lab["exercise"], "mode": lab["mode"], "state": lab["state"],
        "set": {**lab["sets"], **lab["variant"]}, "variant": lab["variant"], "created": lab["created"], "updated": lab["updated"],
        "ended": lab.get("ended"), "queue_position": queue_position if lab["state"] == "queued" else None,
        "stage": lab.get("stage") or "", "error": lab.get("error") if lab["state"] == "failed" else None,
        "steps": picture.get("steps") or [], "hosts": picture.get("hosts") or [],
        "verdict": lab.get("verdict"), "files": files, "filters": {f: FILTERS["annotated"] if f.endswith("-annotated.pcapng") else display_filter(lab)
                                                for f in files if f.endswith(CAPTURE_SUFFIXES)},
        "last_input": lab.get("last_input"), "last_packet": lab.get("last_packet"), "deleted": bool(lab.get("deleted")),
        "retry_of": lab.get("retry_of"),
    }
    if not brief:
        out["events"] = events or []
        out["wire"] = lab.get("wire")
        out["intro"] = picture.get("intro") or ""
        out["next"] = picture.get("next") or ""
        out["told"] = picture.get("told") or []
    return out


def display_filter(lab: dict[str, Any]) -> str:
    params = set(lab["sets"]) | set(lab["variant"])
    name = lab["exercise"]
    if name.startswith("exercise") or "keepidle" in params:
        return FILTERS["keepalive"]
    if "window" in name or "persist" in name:
        return FILTERS["window"]
    return FILTERS["states"]


def result_files(lab: dict[str, Any]) -> list[str]:
    folder = lab.get("folder")
    if not folder:
        return []
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_file(follow_symlinks=False))
    except OSError:
        return []


def open_result(lab: dict[str, Any], name: str) -> Optional[tuple[int, int]]:
    """(fd, size) of the lab's results file called `name`, or None: the name must be one of the folder's
    own regular files as listed, and is opened relative to the folder without following a symlink."""
    if name not in result_files(lab):
        return None
    try:
        dir_fd = os.open(lab["folder"], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st.st_size


def _checks(lab: dict[str, Any]) -> list[dict[str, Any]]:
    return list((lab.get("verdict") or {}).get("checks") or [])


def class_csv(labs: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["student", "exercise", "lab", "mode", "state", "passed", "checks_passed", "checks", "started", "finished", "error"])
    for lab in sorted(labs, key=lambda l: (l["student"], l["created"])):
        checks = _checks(lab)
        verdict = lab.get("verdict")
        w.writerow([lab["student"], lab["exercise"], lab["id"], lab["mode"], lab["state"],
                    "" if verdict is None else ("yes" if verdict.get("passed") else "no"),
                    sum(1 for c in checks if c.get("passed")), len(checks), _when(lab["created"]), _when(lab.get("ended")),
                    lab.get("error") or ""])
    return out.getvalue()


def class_junit(name: str, students: list[str], labs: list[dict[str, Any]]) -> bytes:
    """One test suite per student; one test case per lab's exercise and check (a lab without a verdict: one case, an error)."""
    root = ET.Element("testsuites", name=name)
    for student in sorted(set(students) | {lab["student"] for lab in labs}):
        mine = sorted((lab for lab in labs if lab["student"] == student), key=lambda l: l["created"])
        suite = ET.SubElement(root, "testsuite", name=student)
        tests = failures = errors = 0
        for lab in mine:
            classname = f"{lab['exercise']}.{lab['mode']}.{lab['id']}"
            checks = _checks(lab)
            if lab.get("verdict") is None:
                case = ET.SubElement(suite, "testcase", classname=classname, name=lab["exercise"])
                tests += 1
                if lab["state"] == "failed":
                    ET.SubElement(case, "error", message=lab.get("error") or "failed")
                    errors += 1
                else:
                    ET.SubElement(case, "skipped", message=f"not judged yet: {lab['state']}")
                continue
            for c in checks:
                case = ET.SubElement(suite, "testcase", classname=classname, name=str(c.get("name")))
                tests += 1
                if not c.get("passed"):
                    failures += 1
                    f = ET.SubElement(case, "failure", message=str(c.get("observed") or "failed"))
                    f.text = "\n".join(f"{k}: {c.get(k)}" for k in ("expected", "observed", "detail", "hint") if c.get(k))
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _when(ts: Optional[float]) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) if ts else ""


def readme_html(path: Path) -> str:
    """An exercise's README as HTML (raw HTML in it is escaped, not passed through)."""
    from markdown_it import MarkdownIt

    try:
        text = path.read_text()
    except OSError:
        return ""
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
