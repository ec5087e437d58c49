"""The README's main job end to end: the quickstart imports the embedded corpus into a workspace and
writes an HTML report. Checked from the outside, with Python's own SQLite, HTML parser and pyarrow."""

import re
import sqlite3
from xml.etree import ElementTree
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq


class TagCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = {}
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_data(self, data):
        self.text.append(data)


def test_quickstart_builds_catalog_and_report(saekit, tmp_path):
    ws = tmp_path / "ws"
    out = tmp_path / "report.html"
    done = saekit("--workspace", ws, "quickstart", "--out", out)
    assert done.returncode == 0, done.stderr

    # The catalog, read with Python's sqlite3: both corpora are ready with their chapter counts.
    db = sqlite3.connect(ws / "catalog.sqlite")
    rows = dict(
        db.execute(
            "select a.name, d.num_rows from artifacts a join datasets d on d.id = a.id where a.status = 'ready'"
        ).fetchall()
    )
    assert rows == {"austen": 269, "kjv": 1189}
    tags = {t for (t,) in db.execute("select tag from artifact_tags")}
    assert tags == {"embedded", "public-domain"}

    # The imported Parquet is readable by pyarrow: a text column first, metadata after.
    # Artifact paths are stored relative to the workspace, so a workspace can be moved.
    paths = [ws / p for (p,) in db.execute("select path from artifacts where kind = 'dataset' and name = 'kjv'")]
    files = sorted(paths[0].glob("*.parquet"))
    table = pq.read_table(files[0])
    assert table.column_names[0] == "text"
    assert {"title", "chapter", "source"} <= set(table.column_names)
    assert sum(pq.read_metadata(f).num_rows for f in files) == 1189
    first = table.slice(0, 1).to_pylist()[0]
    assert first["text"].startswith("In the beginning God created the heaven and the earth.")
    assert (first["title"], first["chapter"]) == ("Genesis", 1)

    # The report: one self-contained HTML page with the schema, stats, charts and the catalog.
    html = out.read_text()
    parser = TagCounter()
    parser.feed(html)
    assert parser.tags.get("svg", 0) >= 2, "one length histogram per dataset"
    assert "script" not in parser.tags, "no JavaScript in the report"
    text = " ".join(parser.text)
    for expected in ["Provenance", "Schema of austen", "Dataset kjv", "Catalog", "1,189", "269"]:
        assert expected in text
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", ""), "no network references"
    # Every chart is well-formed SVG (an XML parser accepts it).
    charts = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(charts) >= 5
    for svg in charts:
        root = ElementTree.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_quickstart_twice_keeps_one_row_per_dataset(saekit, tmp_path):
    ws = tmp_path / "ws"
    for _ in range(2):
        done = saekit("--workspace", ws, "quickstart", "--out", tmp_path / "r.html")
        assert done.returncode == 0, done.stderr
    db = sqlite3.connect(ws / "catalog.sqlite")
    assert db.execute("select count(*) from artifacts where kind = 'dataset'").fetchone()[0] == 2
    assert db.execute("select count(*) from artifacts where kind = 'tokenization'").fetchone()[0] == 1
    assert list((ws / "artifacts" / "datasets").iterdir()).__len__() == 2
    assert list((ws / "tmp").iterdir()) == []


def test_bad_input_names_file_and_line_and_is_marked_failed(saekit, tmp_path):
    data = tmp_path / "bad.jsonl"
    lines = ['{"text": "fine"}'] * 11 + ['{"text": "broken"'] + ['{"text": "fine"}'] * 3
    data.write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"
    done = saekit("--workspace", ws, "add", "bad", data)
    assert done.returncode == 1
    assert f"{data}: line 12: malformed JSON" in done.stderr
    listing = saekit("--workspace", ws, "list", "--status", "failed")
    assert "bad" in listing.stdout and "failed" in listing.stdout

    # Skipping bad records registers the 14 good ones, and the interrupted attempt is taken over.
    done = saekit("--workspace", ws, "add", "bad", data, "--skip-bad-records")
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(ws / "catalog.sqlite")
    assert db.execute("select a.status, d.num_rows from artifacts a join datasets d on d.id = a.id").fetchall() == [
        ("ready", 14)
    ]
