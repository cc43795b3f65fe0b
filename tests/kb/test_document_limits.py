"""Per-document limits: each hostile file, made here, fails on its own with a reason."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
import zlib

import pytest
from pypdf import PdfWriter

from ragserve.errors import DocumentError
from ragserve.kb.chunking import Chunker
from ragserve.kb.embeddings import LocalEmbedder
from ragserve.kb.ingest import IngestItem, Ingestor
from ragserve.kb.loaders import DocumentLimits, load_document
from ragserve.kb.store import KnowledgeStore

MB = 1024 * 1024
SMALL = DocumentLimits(max_chars=100_000, max_pages=50)


def docx_bomb(unpacked_mb: int) -> bytes:
    """A DOCX whose document.xml inflates to ``unpacked_mb`` MB, written in 1 MB pieces."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(b'<?xml version="1.0"?><w:document><w:body><w:p><w:r><w:t>')
            for _ in range(unpacked_mb):
                member.write(b"A" * MB)
            member.write(b"</w:t></w:r></w:p></w:body></w:document>")
    return out.getvalue()


def pdf_with_pages(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def fails(data: bytes, name: str, limits: DocumentLimits = SMALL) -> str:
    with pytest.raises(DocumentError) as caught:
        load_document(data, name, limits=limits)
    return str(caught.value)


def test_nul_bytes_in_a_text_file_fail_as_binary() -> None:
    assert "NUL" in fails(b"hello\x00world" * 10, "notes.txt")
    assert "NUL" in fails(b"<p>hi</p>\x00\x00" * 8, "page.html")


def test_utf16_text_with_its_bom_still_loads() -> None:
    text = "Lockers are on floor 2."
    assert load_document(text.encode("utf-16"), "notes.txt").text == text


def test_invalid_utf8_after_a_utf8_bom_fails_with_the_offset() -> None:
    assert "byte" in fails(b"\xef\xbb\xbfhello \xc3\x28 world", "notes.txt")


def test_10mb_single_line_text_fails_over_the_char_limit_and_loads_under_it() -> None:
    line = b"word" * (10 * MB // 4)  # 10 MB, no newline
    assert "RAGSERVE_MAX_DOCUMENT_CHARS" in fails(line, "one-line.txt", DocumentLimits())
    started = time.monotonic()
    loaded = load_document(line, "one-line.txt", limits=DocumentLimits(max_chars=20 * MB))
    assert len(loaded.text) == 10 * MB
    assert time.monotonic() - started < 10


def test_more_bytes_than_the_char_limit_allows_fail_before_decoding() -> None:
    assert "RAGSERVE_MAX_DOCUMENT_CHARS" in fails(b"a" * (4 * SMALL.max_chars + 1), "a.md")


def nested_html(depth: int) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"deep text" + b"</div>" * depth + b"</body></html>"


def test_deeply_nested_html_fails_fast_and_moderate_nesting_loads() -> None:
    started = time.monotonic()
    assert "nested too deeply" in fails(nested_html(100_000), "deep.html", DocumentLimits())
    assert time.monotonic() - started < 10
    assert "512 levels" in fails(nested_html(1000), "deep.html", DocumentLimits())
    assert "deep text" in load_document(nested_html(400), "deep.html").text


def test_docx_zip_bomb_fails_from_its_declared_sizes_without_inflating() -> None:
    bomb = docx_bomb(200)
    assert len(bomb) < MB  # 200 MB inflated, well under 1 MB packed
    tracemalloc.start()
    try:
        reason = fails(bomb, "bomb.docx", DocumentLimits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "zip bomb" in reason
    assert peak < 10 * MB, f"peak {peak / MB:.1f} MB while refusing the bomb"


def test_pdf_over_the_page_limit_fails_before_extracting_text() -> None:
    reason = fails(pdf_with_pages(SMALL.max_pages + 1), "long.pdf")
    assert "RAGSERVE_MAX_DOCUMENT_PAGES" in reason and str(SMALL.max_pages + 1) in reason


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF written object by object, for structures no PDF library would write."""
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    return out + b"startxref\n%d\n%%%%EOF\n" % xref


def pdf_decompression_bomb(unpacked_mb: int) -> bytes:
    """One page whose content stream inflates to ``unpacked_mb`` MB (compressed ~2.5 KB/MB)."""
    packer = zlib.compressobj(9)
    line = b"BT /F1 12 Tf (A) Tj ET\n"
    block = line * (MB // len(line))
    content = b"".join(packer.compress(block) for _ in range(unpacked_mb)) + packer.flush()
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>"
    )
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content)
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            page,
            stream + content + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def test_pdf_decompression_bomb_fails_without_inflating_it_whole() -> None:
    tracemalloc.start()
    try:
        reason = fails(pdf_decompression_bomb(300), "bomb.pdf")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "Limit reached while decompressing" in reason, reason
    # pypdf stops inflating a stream at 75 MB (pypdf.filters.ZLIB_MAX_OUTPUT_LENGTH), and holds
    # about twice that while it joins its buffers (146 MB measured): bounded, not the 300 MB.
    assert peak < 200 * MB, f"peak {peak / MB:.1f} MB while refusing the bomb"


def test_pdf_page_tree_loop_fails_with_a_reason() -> None:
    looped = raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
            b"<< /Type /Pages /Kids [2 0 R] /Parent 2 0 R /Count 1 >>",
        ]
    )
    started = time.monotonic()
    reason = fails(looped, "loop.pdf")
    assert "cyclic" in reason, reason
    assert time.monotonic() - started < 5


async def test_each_hostile_document_fails_alone_and_the_batch_goes_on(
    kb: KnowledgeStore, embedder: LocalEmbedder
) -> None:
    ingestor = Ingestor(kb, embedder, Chunker(800, 100), SMALL)
    items = [
        IngestItem(source="good.txt", data=b"Lockers are on floor 2."),
        IngestItem(source="nul.txt", data=b"bin\x00ary" * 8),
        IngestItem(source="bomb.docx", data=docx_bomb(5)),
        IngestItem(source="long.pdf", data=pdf_with_pages(SMALL.max_pages + 1)),
        IngestItem(source="huge.md", text="x" * (SMALL.max_chars + 1)),
        IngestItem(source="deep.html", data=nested_html(10_000)),
        IngestItem(source="also-good.md", data=b"# Parking\n\nRacks on B1."),
    ]
    results = {r.source: r for r in await ingestor.ingest("limits", items)}
    assert results["good.txt"].status == "ingested"
    assert results["also-good.md"].status == "ingested"
    for bad, reason in [
        ("nul.txt", "NUL"),
        ("bomb.docx", "zip bomb"),
        ("long.pdf", "RAGSERVE_MAX_DOCUMENT_PAGES"),
        ("huge.md", "RAGSERVE_MAX_DOCUMENT_CHARS"),
        ("deep.html", "nested too deeply"),
    ]:
        assert results[bad].status == "failed"
        assert reason in (results[bad].error or ""), results[bad]
