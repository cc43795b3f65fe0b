"""Loaders: every format on real files, encoding detection, and every failure as DocumentError."""

from __future__ import annotations

import io
import json
import random
import time
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from ragserve.errors import DocumentError
from ragserve.kb.loaders import SUPPORTED_EXTENSIONS, decode_text, load_document, load_path
from ragserve.kb.loaders.pdf_text import join_spaced_cjk, remove_running_lines

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "ragserve" / "samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in SUPPORTED_EXTENSIONS)
FORMATS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".md": "markdown",
    ".html": "html",
}

ZH_TEXT = "流明机器人信息安全守则\n\n公司电脑的密码至少 14 位。丢失设备须在 2 小时内报告。"


def load_sample(name: str):
    return load_path(SAMPLES / name)


def english_pdf(pages: list[str]) -> bytes:
    """A text PDF with one page per string, made with fpdf2's built-in Helvetica."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def letter_spaced_chinese_pdf(text: str) -> bytes:
    """A PDF that places every Chinese glyph on its own, with gaps, like many CJK PDFs.

    Hand-built so the test needs no CJK font: pypdf reads text through the ToUnicode map and
    the glyph widths, never the glyph shapes.
    """
    chars = list(dict.fromkeys(text))
    cid = {char: index + 1 for index, char in enumerate(chars)}
    bfchar = "".join(f"<{cid[c]:04X}> <{ord(c):04X}>\n" for c in chars)
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def /CMapType 2 def\n"
        "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
        f"{len(chars)} beginbfchar\n{bfchar}endbfchar\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    glyphs = "".join(
        f"1 0 0 1 {72 + 20 * i} 700 Tm <{cid[c]:04X}> Tj\n" for i, c in enumerate(text)
    )
    content = f"BT /F1 12 Tf\n{glyphs}ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        "/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        f"<< /Length {len(content.encode())} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type0 /BaseFont /Fake /Encoding /Identity-H "
        "/DescendantFonts [6 0 R] /ToUnicode 7 0 R >>",
        "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /Fake /DW 1000 "
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> >>",
        f"<< /Length {len(cmap.encode())} >>\nstream\n{cmap}\nendstream",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n".encode()
    out += b"%%EOF\n"
    return bytes(out)


def docx_bytes(build) -> bytes:
    document = docx.Document()
    build(document)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def random_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)


# --------------------------------------------------------------------------------------------
# Bundled samples
# --------------------------------------------------------------------------------------------


def test_samples_cover_every_format_in_both_languages():
    suffixes = {p.suffix for p in SAMPLE_FILES}
    assert {".pdf", ".docx", ".txt", ".md", ".html"} <= suffixes
    assert any("_zh" in p.stem for p in SAMPLE_FILES)
    assert any("_en" in p.stem for p in SAMPLE_FILES)
    for path in SAMPLE_FILES:
        assert path.stat().st_size < 300_000, path


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_loads(path: Path):
    document = load_path(path)
    assert document.source == str(path)
    assert document.metadata["format"] == FORMATS[path.suffix]
    assert len(document.text) > 300
    assert "\x00" not in document.text and "\r" not in document.text
    # Runs of spaces are collapsed (Markdown and plain text keep their leading indentation).
    assert all("  " not in line.strip() for line in document.text.splitlines())


def test_sample_questions_are_answerable_from_exactly_the_samples():
    questions = json.loads((SAMPLES / "questions.json").read_text(encoding="utf-8"))
    assert len(questions) >= 6
    assert {q["language"] for q in questions} == {"en", "zh"}
    texts = [load_path(p).text for p in SAMPLE_FILES]
    for question in questions:
        assert set(question) == {"question", "expected", "language"}
        assert any(question["expected"] in text for text in texts), question


def test_english_pdf_sample_pages_and_unwrapped_paragraphs():
    document = load_sample("handbook_en.pdf")
    assert document.metadata["pages"] == 2
    assert document.metadata["title"].startswith("Lumen Robotics Employee Handbook")
    # A paragraph printed over three lines comes back as one line.
    assert (
        "Full-time employees receive 23 days of paid annual leave per calendar year. "
        "Part-time employees receive leave in proportion to their contracted hours."
    ) in document.text
    # Headings stay on their own line.
    assert "\n2. Annual leave\n" in document.text
    # The two pages are separated by a blank line.
    assert document.text.count("\n\n") == 1


def test_chinese_pdf_sample_is_readable():
    text = load_sample("travel_zh.pdf").text
    # Lines the PDF wrapped mid-word are rejoined: one paragraph per line.
    assert "\n一线城市（北京、上海、广州、深圳）住宿标准为每晚 650 元；" in text
    assert "住宿标准为每晚 650 元；省会城市为每晚 500 元；其他城市为每晚 400 元。" in text
    assert "原则上合住一间标准间。\n第五条 出差补贴\n" in text
    assert "流 明" not in text and "\ufffd" not in text
    assert "\n第四条 住宿标准\n" in text


def test_docx_sample_keeps_table_rows_in_body_order():
    text = load_sample("benefits_zh.docx").text
    row = "年度体检 | 每人每年 1800 元 | 每年 4 月至 6 月在指定机构完成"
    assert row in text
    assert text.index("下表列出了") < text.index(row) < text.index("学习发展基金当年未使用")


def test_gb18030_text_sample_is_detected():
    document = load_sample("it_security_zh.txt")
    assert document.metadata["encoding"] == "gb18030"
    assert "公司电脑和业务系统的密码至少 14 位" in document.text


def test_html_sample_drops_page_chrome():
    document = load_sample("office_guide_en.html")
    text = document.text
    assert "Visitors use the guest network Lumen-Guest" in text
    assert "Ground floor | Reception, Security, parcel room" in text
    assert document.metadata["title"] == "Office Guide: Harbor Point | Lumen Intranet"
    for chrome in ("Careers", "Latest news", "2024 Lumen Robotics", "analytics", "Search"):
        assert chrome not in text, chrome


def test_markdown_sample_drops_front_matter_and_keeps_code_indent():
    text = load_sample("onboarding_en.md").text
    assert text.startswith("# Welcome to Lumen Robotics")
    assert "owner: People Operations" not in text
    assert "\n    git clone https://git.lumen-robotics.example/sim/fleet-sim.git\n" in text
    assert "**Room 3.14**" in text


# --------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------


def test_pdf_pages_are_separated_by_blank_lines():
    data = english_pdf(["First page text.", "Second page text.", "Third page text."])
    document = load_document(data, "three.pdf", {"team": "ops", "format": "custom"})
    assert document.text == "First page text.\n\nSecond page text.\n\nThird page text."
    assert document.metadata == {"format": "custom", "pages": 3, "team": "ops"}


class RunningPdf(FPDF):
    """A report with a running title on top and ``Page N of M`` at the bottom of each page."""

    def __init__(self, title_page: bool = False):
        super().__init__()
        self.title_page = title_page

    def header(self):
        if self.title_page and self.page_no() == 1:
            return
        self.set_font("Helvetica", size=9)
        self.cell(0, 8, "Lumen Robotics - Travel Policy 2024", align="C")
        self.ln(12)

    def footer(self):
        self.set_y(-15)
        self.set_font("Helvetica", size=9)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")


def running_pdf(bodies: list[str], title_page: bool = False) -> bytes:
    pdf = RunningPdf(title_page)
    for body in bodies:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, body)
    return bytes(pdf.output())


TRAVEL_PAGES = [
    "Section 1. Booking. Book flights through the travel desk at least 14 days ahead.",
    "Section 2. Hotels. The nightly limit is 180 EUR in capital cities.",
    "Section 3. Meals. The daily meal allowance is 60 EUR.",
    "Section 4. Scope. The Lumen Robotics - Travel Policy 2024 applies to all staff.",
    "Section 5. Claims. Submit receipts within 30 days of your return.",
]


def test_pdf_running_header_and_page_numbers_are_removed():
    data = running_pdf(TRAVEL_PAGES)
    raw = [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]
    assert all("Page " in page and "Travel Policy 2024" in page for page in raw)  # it's there

    text = load_document(data, "travel.pdf").text
    assert text == "\n\n".join(TRAVEL_PAGES)  # the title in the body of page 4 stays
    assert "Page" not in text


def test_pdf_running_lines_are_found_when_the_title_page_has_none():
    data = running_pdf(["Travel Policy", *TRAVEL_PAGES], title_page=True)
    text = load_document(data, "travel.pdf").text
    assert text == "\n\n".join(["Travel Policy", *TRAVEL_PAGES])


def test_running_lines_with_changing_numbers_and_body_repeats():
    bodies = [
        ["Hotels are booked by the desk.", "Rail is preferred", "under 4 hours.", "Taxis need"],
        ["Meals are paid per day.", "Alcohol is not", "reimbursed.", "Tips up to 10%"],
        ["Claims are filed monthly.", "Receipts are", "scanned.", "Late claims"],
        ["Cards are personal.", "Limits are", "set by Finance.", "Lost cards"],
    ]
    pages = [
        "\n".join([f"Chapter {n} - Expenses", *body[:2], "Approved by the CFO.", *body[2:], f"{n}"])
        for n, body in enumerate(bodies, start=1)
    ]
    cleaned = remove_running_lines(pages)
    # Header (numbers masked) and page number go; the sentence every page repeats mid-body
    # stays, because only the first and last three printed lines are looked at.
    for body, page in zip(bodies, cleaned, strict=True):
        assert page == "\n".join([*body[:2], "Approved by the CFO.", *body[2:]])


def test_two_pages_are_too_little_evidence_for_running_lines():
    pages = ["Minutes\nFirst page.", "Minutes\nSecond page."]
    assert remove_running_lines(pages) == pages


def test_letter_spaced_chinese_pdf_is_joined():
    data = letter_spaced_chinese_pdf("流明机器人的年假为每年二十三天。")
    assert " " in PdfReader(io.BytesIO(data)).pages[0].extract_text()  # the problem exists
    assert load_document(data, "spaced.pdf").text == "流明机器人的年假为每年二十三天。"


def test_deliberate_spaces_between_chinese_words_are_kept():
    # Only text where most Chinese characters are space-separated is treated as letter-spaced.
    table = "姓名 部门 电话\n王芳 人力资源部 6688\n李雷 财务部 5120\n这是正常的中文句子。"
    assert join_spaced_cjk(table) == table
    assert join_spaced_cjk("流 明 机 器 人 的 年 假") == "流明机器人的年假"


def test_encrypted_pdf_needs_password():
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(english_pdf(["Secret plans."]))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(DocumentError, match="encrypted PDF"):
        load_document(buffer.getvalue(), "locked.pdf")


def test_pdf_encrypted_only_against_editing_opens():
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(english_pdf(["Open to read."]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert load_document(buffer.getvalue(), "readonly.pdf").text == "Open to read."


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (random_bytes(4000), "corrupt PDF: no PDF header"),
        (b"%PDF-1.4\n" + random_bytes(4000), "corrupt PDF"),
        (english_pdf(["Some text that will be cut off."])[:400], "truncated"),
    ],
    ids=["random", "random-with-header", "truncated"],
)
def test_corrupt_pdf(data: bytes, reason: str):
    with pytest.raises(DocumentError, match=reason):
        load_document(data, "broken.pdf")


def test_pdf_without_text_is_empty():
    pdf = FPDF()
    pdf.add_page()
    with pytest.raises(DocumentError, match=r"empty document: no text extracted.*scanned"):
        load_document(bytes(pdf.output()), "blank.pdf")


# --------------------------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_order_with_merged_cells_once():
    def build(document):
        document.add_heading("Expense limits", level=1)
        document.add_paragraph("Limits per trip are below.")
        table = document.add_table(rows=3, cols=3)
        for r, row in enumerate([("City", "Hotel", "Meals"), ("Berlin", "180", "60")]):
            for c, value in enumerate(row):
                table.cell(r, c).text = value
        merged = table.cell(2, 0).merge(table.cell(2, 2))
        merged.text = "Other cities: ask Finance"
        document.add_paragraph("Approved by the CFO.")

    text = load_document(docx_bytes(build), "limits.docx").text
    assert text == (
        "Expense limits\n\nLimits per trip are below.\n\n"
        "City | Hotel | Meals\nBerlin | 180 | 60\nOther cities: ask Finance\n\n"
        "Approved by the CFO."
    )


@pytest.mark.parametrize(
    "data",
    [
        random_bytes(3000),
        docx_bytes(lambda d: d.add_paragraph("cut short"))[:2000],
        b"PK\x05\x06" + b"\x00" * 18,  # an empty zip archive
    ],
    ids=["random", "truncated", "empty-zip"],
)
def test_corrupt_docx(data: bytes):
    with pytest.raises(DocumentError, match="corrupt DOCX"):
        load_document(data, "broken.docx")


def test_docx_with_malformed_xml():
    good = docx_bytes(lambda d: d.add_paragraph("fine"))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "word/document.xml":
                body = body[: len(body) // 2]
            dst.writestr(info, body)
    with pytest.raises(DocumentError, match="corrupt DOCX"):
        load_document(out.getvalue(), "broken.docx")


def test_docx_without_text_is_empty():
    with pytest.raises(DocumentError, match="empty document"):
        load_document(docx_bytes(lambda d: d.add_paragraph("   ")), "blank.docx")


# --------------------------------------------------------------------------------------------
# Text encodings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (ZH_TEXT.encode("utf-8"), "utf-8"),
        (ZH_TEXT.encode("utf-8-sig"), "utf-8"),
        (ZH_TEXT.encode("utf-16"), "utf-16-le"),
        (b"\xfe\xff" + ZH_TEXT.encode("utf-16-be"), "utf-16-be"),
        (ZH_TEXT.encode("gb18030"), "gb18030"),
        (ZH_TEXT.encode("gbk"), "gb18030"),
        (ZH_TEXT.encode("gb2312"), "gb18030"),
    ],
    ids=["utf8", "utf8-bom", "utf16-le-bom", "utf16-be-bom", "gb18030", "gbk", "gb2312"],
)
def test_chinese_text_encodings(encoded: bytes, encoding: str):
    document = load_document(encoded, "security.txt")
    assert document.text == ZH_TEXT
    assert document.metadata == {"format": "text", "encoding": encoding}


def test_short_gbk_text_is_not_mistaken_for_another_code_page():
    assert decode_text("年假".encode("gbk")) == ("年假", "gb18030")


def test_english_and_other_encodings():
    assert load_document(b"Plain ASCII notes.", "a.txt").text == "Plain ASCII notes."
    big5 = "資訊安全守則：密碼長度至少十四位，並且每半年更換一次。".encode("big5")
    assert decode_text(big5)[0].startswith("資訊安全守則")


def test_binary_file_named_txt():
    with pytest.raises(DocumentError, match="encoding"):
        load_document(bytes(range(256)) * 8, "binary.txt")


def test_text_normalisation():
    raw = b"Title\r\n\r\n\r\n\r\nFirst  line\t\twith   gaps \x00\r\nsecond line\n\n\n\nEnd\xc2\xa0."
    assert load_document(raw, "notes.text").text == (
        "Title\n\nFirst line with gaps\nsecond line\n\nEnd ."
    )


# --------------------------------------------------------------------------------------------
# Markdown and HTML
# --------------------------------------------------------------------------------------------


def test_markdown_front_matter_only_when_it_is_yaml():
    with_yaml = b"---\ntitle: X\ntags: [a]\n---\n# Heading\n\nBody."
    assert load_document(with_yaml, "a.md").text == "# Heading\n\nBody."
    rules = b"---\nJust a rule, not front matter\n---\nBody."
    assert load_document(rules, "b.markdown").text == rules.decode()


def test_html_prefers_main_and_keeps_structure():
    html = b"""<html><head><title>T</title><style>p{}</style></head><body>
    <header><h1>Site name</h1></header><nav><a>Home</a></nav>
    <div>Outside main</div>
    <main><h2>Policy</h2><p>First <b>bold</b> paragraph.</p>
    <ul><li>one</li><li>two</li></ul>
    <table><tr><th>Item</th><th>Limit</th></tr><tr><td>Meals</td><td>70 USD</td></tr></table>
    <script>var x = 1;</script><noscript>Enable JS</noscript></main>
    <footer>Copyright</footer></body></html>"""
    document = load_document(html, "page.htm")
    assert document.text == (
        "Policy\n\nFirst bold paragraph.\n\none\ntwo\n\nItem | Limit\nMeals | 70 USD"
    )
    assert document.metadata == {"format": "html", "title": "T"}


def test_html_without_main_drops_chrome_but_keeps_article_header():
    html = """<body><nav>Menu</nav><header>Site banner</header>
    <article><header><h1>文章标题</h1></header><p>正文第一段。</p><footer>作者：王芳</footer></article>
    <aside>Related</aside><form>Search</form><footer>© Lumen</footer></body>""".encode()
    text = load_document(html, "a.html").text
    assert text == "文章标题\n\n正文第一段。\n\n作者：王芳"


def test_html_header_inside_main_is_content():
    html = b"<body><header>Site</header><main><header><h1>Leave</h1></header><p>23 days.</p></main>"
    assert load_document(html, "m.html").text == "Leave\n\n23 days."


def test_html_sections_titled_like_chrome_are_content():
    # Documentation tools derive section ids from titles: id="navigation" is a section here.
    html = b"""<body><div role="main"><h1>Robot manual</h1>
    <section id="navigation"><h2>Navigation</h2><p>The robot plans its route with lidar.</p>
    </section><div class="section" id="search"><h2>Search</h2><p>It searches rooms.</p></div>
    <div id="footer">Site footer</div></div></body>"""
    text = load_document(html, "manual.html").text
    assert text == (
        "Robot manual\n\nNavigation\n\nThe robot plans its route with lidar.\n\n"
        "Search\n\nIt searches rooms."
    )


def test_html_documentation_tool_chrome():
    # The shapes of Texinfo, texi2html and Sphinx chrome, without the tools' class names.
    html = b"""<body>
    <div><p>Next: <a href="b.html">Basics</a>, Up: <a href="i.html">Intro</a>
    [<a href="x">Index</a>]</p></div>
    <table><tr><td>[<a href="p">&lt;&lt;</a>]</td><td>[<a href="n">&gt;&gt;</a>]</td>
    <td>[<a href="t">Top</a>]</td></tr></table>
    <h2>Contents</h2><ul><li><a href="#a">Install</a></li><li><a href="#b">Configure</a></li>
    <li><a href="#c">Run</a></li></ul>
    <h1>Install</h1><p>Run the <a href="setup.html">setup</a> script as root.</p>
    <p>See <a href="a.html">A</a>.</p>
    <p>Go to the <a href="n.html">next</a> section or return to the <a href="i.html">index</a>.</p>
    <p>This document was generated by Bruno on July 26 using texi2html 1.78a.</p></body>"""
    text = load_document(html, "install.html").text
    assert text == "Install\n\nRun the setup script as root.\n\nSee A."


def test_html_many_links_in_nested_blocks_load_fast():
    # API pages nest thousands of linked names in deep divs (Node's all.html, Javadoc
    # "class-use"). Judging each block must not cost a pass over its text per link: cutting
    # link texts out of every block's text took 30 s on this page, walking text nodes 2 s.
    paragraphs = "".join(
        f'<p>Call <a href="f{i}.html">function_{i}</a> to handle case {i} of the input.</p>'
        for i in range(5_000)
    )
    html = f"<body>{'<div>' * 30}{paragraphs}{'</div>' * 30}</body>".encode()
    started = time.perf_counter()
    text = load_document(html, "api.html").text
    assert text.count("to handle case") == 5_000
    assert time.perf_counter() - started < 15


def test_html_meta_charset_gbk():
    html = '<html><head><meta charset="gb2312"></head><body><p>差旅补贴每天 120 元。</p>'
    assert load_document(html.encode("gbk"), "zh.html").text == "差旅补贴每天 120 元。"


def test_html_with_only_chrome_is_empty():
    with pytest.raises(DocumentError, match="empty document"):
        load_document(b"<html><body><nav>Home</nav><footer>(c)</footer></body></html>", "x.html")


# --------------------------------------------------------------------------------------------
# Dispatch, empty files, paths
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["data.xyz", "README", "old.doc"])
def test_unsupported_extension(name: str):
    with pytest.raises(DocumentError, match="unsupported file type"):
        load_document(b"some content", name)


def test_unsupported_extension_names_it():
    with pytest.raises(DocumentError, match=r"unsupported file type '\.xyz'"):
        load_document(b"x", "data.xyz")


@pytest.mark.parametrize("extension", sorted(SUPPORTED_EXTENSIONS))
@pytest.mark.parametrize("data", [b"", b" \n\t\r\n "], ids=["empty", "whitespace"])
def test_empty_files(extension: str, data: bytes):
    with pytest.raises(DocumentError, match="empty document"):
        load_document(data, f"empty{extension}")


def test_extension_is_case_insensitive():
    assert load_document(b"Upper case name.", "NOTES.TXT").text == "Upper case name."


def test_load_path_keeps_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nText.", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    document = load_path(Path("docs/a.md"), {"team": "ops"})
    assert document.source == "docs/a.md"
    assert document.metadata == {"format": "markdown", "encoding": "utf-8", "team": "ops"}


def test_load_path_missing_file(tmp_path: Path):
    with pytest.raises(DocumentError, match="cannot read file"):
        load_path(tmp_path / "missing.pdf")
