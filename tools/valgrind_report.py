"""Reads the XML files `make valgrind` asks memcheck to write (one per
process: the test run and every subprocess it starts) and judges them.

An error or definite leak is iommap's when any frame of its stack lies in
iommap's core (the _core extension module or a source file under
src/iommap/_core/).  Those fail the run, each printed with its stack; the
others (CPython, numpy, the dynamic loader, which tools/valgrind.supp does
not already silence) are counted and listed by kind and top frame, so that
nothing is hidden.

    python tools/valgrind_report.py DIR
"""

import collections
import glob
import os
import sys
import xml.etree.ElementTree as ET


def frames(error):
    stack = error.find("stack")
    return [] if stack is None else stack.findall("frame")


def frame_text(frame):
    fn = frame.findtext("fn") or "???"
    where = frame.findtext("file")
    if where:
        where = "%s:%s" % (where, frame.findtext("line") or "?")
    else:
        where = os.path.basename(frame.findtext("obj") or "?")
    return "%s (%s)" % (fn, where)


def is_iommap(frame):
    obj = frame.findtext("obj") or ""
    path = os.path.join(frame.findtext("dir") or "", frame.findtext("file") or "")
    return "/iommap/_core." in obj or "iommap/_core/" in path


def describe(error):
    what = error.findtext("what") or error.findtext("xwhat/text") or ""
    return "%s: %s" % (error.findtext("kind"), what)


def main(directory):
    files = sorted(glob.glob(os.path.join(directory, "*.xml")))
    if not files:
        print("valgrind report: no XML files in %s" % directory)
        return 2
    ours, others = [], collections.Counter()
    processes = 0
    for path in files:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            # A process killed on purpose (the SIGKILL tests) leaves its
            # file unfinished: read the complete records it has.
            text = open(path, errors="replace").read()
            cut = text.rfind("</error>")
            text = text[: cut + len("</error>")] if cut >= 0 else text.split("<error>")[0]
            root = ET.fromstring(text + "</valgrindoutput>")
        processes += 1
        for error in root.iter("error"):
            kind = error.findtext("kind") or ""
            if kind.startswith("Leak_") and kind != "Leak_DefinitelyLost":
                continue
            fs = frames(error)
            if any(is_iommap(f) for f in fs):
                ours.append((path, error))
            else:
                top = (
                    frame_text(fs[1] if len(fs) > 1 and kind.startswith("Leak_") else fs[0])
                    if fs
                    else "?"
                )
                others[(kind, top)] += 1
    print("valgrind report: %d processes" % processes)
    if others:
        print("outside iommap's code (not counted): %d" % sum(others.values()))
        for (kind, top), n in others.most_common():
            print("  %4d  %s at %s" % (n, kind, top))
    print("in iommap's code: %d" % len(ours))
    for path, error in ours:
        print("\n%s (%s)" % (describe(error), os.path.basename(path)))
        for f in frames(error):
            print("    %s" % frame_text(f))
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
