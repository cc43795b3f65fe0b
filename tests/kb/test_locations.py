"""Where a chunk comes from: PDF pages, heading paths, tables and rows, on real files, stored and
shown in sources without touching the user's own metadata."""

from __future__ import annotations

import io
from pathlib import Path

import docx
from fpdf import FPDF

from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.loaders import load_document, load_path
from ragserve.kb.store import KnowledgeStore
from ragserve.kb.types import Chunk, Location, RetrievedChunk
from ragserve.rag.prompts import format_context
from ragserve.rag.retrieval import Retriever

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "ragserve" / "samples"


def chunks_of(path: Path, size: int = 300) -> list[Chunk]:
    return Chunker(size, 40).split_document(load_path(path))


def english_pdf(pages: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def test_every_pdf_chunk_has_its_page_and_never_spans_two() -> None:
    topics = ("annual leave", "travel expenses", "laptop security")
    pages = [
        " ".join(f"Rule {r} on {topic} has the code P{n}X and more words." for r in range(12))
        for n, topic in enumerate(topics, start=1)
    ]
    document = load_document(english_pdf(pages), "report.pdf")
    chunks = Chunker(200, 30).split_document(document)
    assert len(chunks) > 3
    for chunk in chunks:
        page = chunk.location.page
        assert page in (1, 2, 3)
        assert f"P{page}X" in chunk.text
        assert not any(f"P{n}X" in chunk.text for n in (1, 2, 3) if n != page)
    assert {chunk.location.page for chunk in chunks} == {1, 2, 3}


def test_pdf_samples_carry_page_numbers() -> None:
    for name in ("handbook_en.pdf", "travel_zh.pdf"):
        chunks = chunks_of(SAMPLES / name)
        assert chunks and all(isinstance(c.location.page, int) for c in chunks), name
    handbook = chunks_of(SAMPLES / "handbook_en.pdf")
    assert {c.location.page for c in handbook} == {1, 2}
    assert any(c.location.page == 2 and "5th working day" in c.text for c in handbook)


def test_pdf_numbered_headings_give_sections_across_pages() -> None:
    handbook = chunks_of(SAMPLES / "handbook_en.pdf", size=800)
    title = "Lumen Robotics Employee Handbook (2024 edition)"  # the first line: level 0
    where = {(c.location.page, c.location.section) for c in handbook}
    assert (1, (title, "2. Annual leave")) in where
    assert (2, (title, "4. Expenses")) in where  # the section goes on over the page break
    assert not any(c.text == title for c in handbook)  # no chunk of a bare heading
    travel = chunks_of(SAMPLES / "travel_zh.pdf", size=800)
    lodging = next(c for c in travel if "650 元" in c.text)
    assert lodging.location == Location(
        page=1, section=("流明机器人差旅管理办法（2024 年版）", "第四条 住宿标准")
    )


def test_pdf_numbered_list_is_not_taken_for_headings() -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=15)
    pdf.multi_cell(0, 9, "1. Getting started", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", size=11)
    for line in (
        "Follow these steps on your first day at the office. " * 4,
        "1. Open the app",
        "2. Log in with your badge",
        "3. Pick a desk",
        "That is all.",
    ):
        pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    document = load_document(bytes(pdf.output()), "steps.pdf")
    chunks = Chunker(800, 50).split_document(document)
    assert [c.location.section for c in chunks] == [("1. Getting started",)]
    assert "2. Log in with your badge" in chunks[0].text


def test_markdown_heading_paths_and_table_rows() -> None:
    chunks = chunks_of(SAMPLES / "onboarding_en.md")
    where = {c.location.section: c for c in chunks if c.location.table is None}
    probation = where[("Welcome to Lumen Robotics", "Probation")]
    assert probation.text.startswith("The probation period is 4 months.")
    assert "#" not in probation.text  # headings are the section, not part of the text
    table = next(c for c in chunks if c.location.table is not None)
    assert table.location == Location(
        section=("Welcome to Lumen Robotics", "Your first weeks"), table=1, row=1
    )
    assert table.text.startswith("When | What\nWeek 1 |")


def test_markdown_nesting_setext_and_code_fences() -> None:
    text = (
        "Guide\n=====\n\nIntro.\n\n## Leave\n\n### Annual leave\n\n23 days.\n\n"
        "```\n# not a heading\n```\n\n## Expenses\n\nKeep receipts.\n"
    )
    document = load_document(text.encode(), "guide.md")
    located = [(b.location.section, b.text) for b in document.blocks]
    assert located == [
        (("Guide",), "Intro."),
        (("Guide", "Leave", "Annual leave"), "23 days.\n\n```\n# not a heading\n```"),
        (("Guide", "Expenses"), "Keep receipts."),
    ]
    assert document.text == text.strip()  # the document text itself is unchanged


def test_html_heading_paths_and_tables() -> None:
    chunks = chunks_of(SAMPLES / "office_guide_en.html")
    sections = {c.location.section for c in chunks}
    assert ("Office Guide: Harbor Point Campus", "Wi-Fi") in sections
    floors = [c for c in chunks if c.location.table == 1]
    assert floors and floors[0].location.section == ("Office Guide: Harbor Point Campus", "Floors")
    assert floors[0].text.startswith("Floor | What you find there\n")
    assert all("Wi-Fi" not in c.text.split("\n")[0] for c in chunks if c.location.table is None)


def test_docx_headings_and_table_rows_packed_under_their_header() -> None:
    document = docx.Document()
    document.add_heading("Expenses", level=1)
    document.add_paragraph("Claims go through Ledgerly.")
    document.add_heading("Travel limits", level=2)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "City", "Hotel per night"
    for n in range(1, 31):
        cells = table.add_row().cells
        cells[0].text, cells[1].text = f"City {n:02d}", f"{100 + n} USD"
    document.add_heading("Security", level=1)
    document.add_paragraph("Lock your screen.")
    buffer = io.BytesIO()
    document.save(buffer)
    chunks = Chunker(200, 20).split_document(load_document(buffer.getvalue(), "policy.docx"))
    assert chunks[0] == Chunk("Claims go through Ledgerly.", Location(section=("Expenses",)))
    rows = [c for c in chunks if c.location.table == 1]
    assert len(rows) > 1
    assert all(c.text.startswith("City | Hotel per night\n") for c in rows)
    assert all(c.location.section == ("Expenses", "Travel limits") for c in rows)
    # each chunk's row is the number of its first data row
    for chunk in rows:
        first = chunk.text.split("\n")[1]
        assert first == f"City {chunk.location.row:02d} | {100 + (chunk.location.row or 0)} USD"
    assert chunks[-1] == Chunk("Lock your screen.", Location(section=("Security",)))


def test_docx_and_chinese_samples() -> None:
    benefits = chunks_of(SAMPLES / "benefits_zh.docx")
    assert all(c.location.section == ("流明机器人员工福利说明",) for c in benefits)
    assert any(c.location.table == 1 and c.location.row == 1 for c in benefits)
    faq = chunks_of(SAMPLES / "faq_zh.md")
    assert ("行政常见问题（苏州办公室）", "有没有班车？") in {c.location.section for c in faq}
    # plain text has no structure: one unknown location
    assert all(c.location == Location() for c in chunks_of(SAMPLES / "it_security_zh.txt"))


def test_headings_are_embedded_with_the_chunk_but_not_in_its_text() -> None:
    chunk = Chunk("23 days a year.", Location(section=("Leave policy", "Annual leave")))
    assert chunk.embedding_text() == "Leave policy › Annual leave\n23 days a year."
    assert Chunk("x").embedding_text() == "x"


def test_source_location_shape_and_user_metadata_kept_apart() -> None:
    stored = {
        "team": "hr",
        "location": "Berlin",  # the user's own key
        "_location": {"page": 3, "section": ["Leave", "Annual"], "table": 2, "row": 5},
    }
    source = RetrievedChunk("c", "d", "a.pdf", "t", 0.5, stored).as_source()
    assert source["metadata"] == {"team": "hr", "location": "Berlin"}
    assert source["location"] == {"page": 3, "section": ["Leave", "Annual"], "table": 2, "row": 5}
    plain = RetrievedChunk("c", "d", "a.txt", "t", 0.5, {"team": "hr"}).as_source()
    assert plain["location"] == {"page": None, "section": None}
    context = format_context([RetrievedChunk("c", "d", "a.pdf", "t", 0.5, stored)])
    assert context.startswith("[1] (source: a.pdf p. 3 · Leave › Annual · table 2, row 5)\nt")


async def test_locations_are_stored_and_come_back_with_sources(
    ingestor: Ingestor, kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    items = [
        IngestItem(source=name, path=SAMPLES / name, metadata={"location": "Suzhou", "team": "hr"})
        for name in ("handbook_en.pdf", "onboarding_en.md", "office_guide_en.html")
    ]
    sent_as_text = IngestItem(source="notes.md", text="# Parking\n\n## Bicycles\n\nRacks on B1.")
    results = await ingestor.ingest("where", [*items, sent_as_text])
    assert [r.status for r in results] == ["ingested"] * 4
    retriever = Retriever(kb, embedder)
    hits = await retriever.retrieve("How long is the probation period?", collection="where")
    best = hits[0].as_source()
    assert best["source"] == "onboarding_en.md"
    assert best["location"] == {"page": None, "section": ["Welcome to Lumen Robotics", "Probation"]}
    assert best["metadata"]["location"] == "Suzhou"  # the user's key is untouched
    assert "_location" not in best["metadata"]
    pdf_hits = await retriever.retrieve(
        "When must card statements be reconciled?",
        collection="where",
        document_scope=["handbook_en.pdf"],
        top_k=10,
    )
    assert pdf_hits and all(isinstance(h.as_source()["location"]["page"], int) for h in pdf_hits)
    # user metadata filters still work on chunks that carry a location
    filtered = await retriever.retrieve("Wi-Fi", collection="where", filters={"team": "hr"})
    assert filtered
    # Markdown sent as text through the API gets its heading path too
    bikes = await retriever.retrieve(
        "Where are bicycle racks?", collection="where", document_scope=["notes.md"]
    )
    assert bikes[0].text == "Racks on B1."
    assert bikes[0].location == Location(section=("Parking", "Bicycles"))
