"""Generate the bundled sample documents in ``src/ragserve/samples/``.

The samples are a small, entirely fictional company handbook of "Lumen Robotics" (流明机器人)
in Chinese and English, spread over every supported format, so that ``ragserve demo`` and the
loader tests exercise real files: a multi-page PDF, a Chinese PDF with an embedded font, Word
files with tables, GB18030 plain text, Markdown with front matter and HTML with page chrome.
Each file states concrete facts (numbers, names, places) so that the questions in
``questions.json`` have short, checkable answers that appear in exactly one document.

The generated files are committed; this script is only needed to change them. Building the
Chinese PDF needs a CJK TrueType font (Debian: ``apt-get install fonts-wqy-microhei`` or
``fonts-noto-cjk``); fpdf2 embeds only the glyphs used, so the PDF stays small. Output is
deterministic (fixed dates), so regenerating unchanged content gives identical files.

Usage: ``python bench/make_samples.py [--out DIR] [--font PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

FIXED_DATE = dt.datetime(2024, 9, 1, 9, 0, 0, tzinfo=dt.UTC)
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "ragserve" / "samples"
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)

# A section is (heading, [paragraph, ...]).
Section = tuple[str, Sequence[str]]

# --------------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------------

HANDBOOK_EN: tuple[str, Sequence[Section]] = (
    "Lumen Robotics Employee Handbook (2024 edition)",
    [
        (
            "1. About this handbook",
            [
                "Lumen Robotics designs warehouse robots and the software that coordinates "
                "them. The company was founded in 2016 and has about 340 employees at its "
                "headquarters on the Harbor Point Campus and in the Suzhou engineering office. "
                "This handbook describes the leave and expense policies that apply to all "
                "employees with a permanent contract. Questions about it go to People "
                "Operations at people@lumen-robotics.example.",
                "Core working hours are 10:00 to 15:00, Monday to Friday. Outside core hours "
                "employees organise their time with their team. A normal full-time week is "
                "38 hours.",
            ],
        ),
        (
            "2. Annual leave",
            [
                "Full-time employees receive 23 days of paid annual leave per calendar year. "
                "Part-time employees receive leave in proportion to their contracted hours. "
                "Employees who join during the year receive a pro-rata share for the "
                "remaining months.",
                "Up to 5 unused days may be carried over into the next year; carried-over "
                "days must be taken before 31 March, after which they expire. Leave is "
                "requested in the PeopleHub system. Requests for more than 3 consecutive "
                "days must be submitted at least 10 working days in advance and approved by "
                "the employee's manager.",
                "The office is closed between Christmas and New Year. These days are "
                "company holidays and are not deducted from annual leave.",
            ],
        ),
        (
            "3. Sick leave and parental leave",
            [
                "Employees receive 12 paid sick days per year. Please tell your manager "
                "before 09:30 on the first day of illness. A medical certificate is required "
                "from the fourth consecutive day of absence.",
                "The primary caregiver of a new child receives 18 weeks of parental leave on "
                "full pay; the secondary caregiver receives 6 weeks on full pay. Parental "
                "leave can be split into at most three blocks and must be taken within 12 "
                "months of the birth or adoption.",
            ],
        ),
        (
            "4. Expenses",
            [
                "Business expenses are claimed in the Ledgerly expense tool within 45 days "
                "of the purchase. Claims submitted later are only paid with the approval of "
                "the Finance Controller, Daniel Okafor.",
                "A receipt is required for every item above 25 USD. While travelling, meals "
                "are reimbursed up to 70 USD per day; alcohol is never reimbursed. Any single "
                "purchase above 800 USD needs written approval from the department head "
                "before the purchase is made.",
                "Approved expenses are paid with the next payroll run. Claims approved by the "
                "15th of a month are paid on the 25th of the same month.",
                "Company credit cards are issued to employees who travel more than six times "
                "a year. Card statements must be reconciled in Ledgerly by the 5th working "
                "day of the following month.",
            ],
        ),
    ],
)

TRAVEL_ZH: tuple[str, Sequence[Section]] = (
    "流明机器人差旅管理办法（2024 年版）",
    [
        (
            "第一条 适用范围",
            [
                "本办法适用于流明机器人（苏州）有限公司全体员工因公出差的申请、交通、住宿"
                "和报销。出差是指离开常驻城市前往其他城市处理公务。",
            ],
        ),
        (
            "第二条 出差申请",
            [
                "员工出差须至少提前 3 个工作日在“行云”系统提交出差申请，经直属经理审批后方可"
                "预订交通和酒店。紧急出差可先口头报备，但须在出发后 24 小时内补交申请。",
            ],
        ),
        (
            "第三条 交通标准",
            [
                "城际交通优先选择高铁，乘坐二等座。国内航班一律乘坐经济舱。国际航班单程飞行"
                "时间超过 8 小时的，可申请商务舱，须经分管副总裁批准。市内交通优先使用地铁"
                "和公交，夜间 22:00 以后可乘坐出租车。",
            ],
        ),
        (
            "第四条 住宿标准",
            [
                "一线城市（北京、上海、广州、深圳）住宿标准为每晚 650 元；省会城市为每晚 "
                "500 元；其他城市为每晚 400 元。超出标准的部分由员工自行承担。两名同性别员工"
                "同行时，原则上合住一间标准间。",
            ],
        ),
        (
            "第五条 出差补贴",
            [
                "出差补贴为每天 120 元，用于餐饮和市内零星交通，按实际出差天数计算，无需提供"
                "发票。出差当天往返的，补贴减半发放。",
            ],
        ),
        (
            "第六条 报销",
            [
                "员工应在出差返回后 15 个自然日内，在“行云”系统提交报销单并上传电子发票。"
                "财务部在收到完整单据后 7 个工作日内完成审核并付款。差旅问题请联系行政部"
                "差旅服务台，内线电话 5120。",
            ],
        ),
    ],
)

BENEFITS_ZH_INTRO = (
    "流明机器人员工福利说明",
    [
        "为帮助员工安心工作、持续成长，公司在国家规定的社会保险和住房公积金之外，为全体正式"
        "员工提供以下补充福利。试用期员工自入职第一天起享受餐费补贴和补充医疗保险，其他福利"
        "自转正之日起享受。",
        "下表列出了各项福利的标准。所有金额均为人民币，按自然年计算。",
    ],
)
BENEFITS_ZH_TABLE = [
    ("福利项目", "标准", "说明"),
    ("补充医疗保险", "覆盖员工本人及子女", "门诊和住院费用报销比例 90%"),
    ("年度体检", "每人每年 1800 元", "每年 4 月至 6 月在指定机构完成"),
    ("餐费补贴", "每月 660 元", "随当月工资发放"),
    ("学习发展基金", "每年 5000 元", "可用于课程、书籍和职业资格考试"),
    ("健身补贴", "每月 200 元", "凭发票每季度报销一次"),
    ("生日礼金", "300 元", "生日当月随工资发放"),
]
BENEFITS_ZH_OUTRO = [
    "学习发展基金当年未使用的部分不结转到下一年。申请使用学习发展基金时，须先在“成长”"
    "平台提交课程计划，由直属经理批准。",
    "福利相关问题请联系人力资源部福利专员王芳，邮箱 wangfang@lumen-robotics.example。",
]

REMOTE_EN_INTRO = (
    "Remote Work Policy",
    [
        "Lumen Robotics supports hybrid work. After passing probation, employees may work "
        "remotely up to 3 days per week, agreed with their manager. Tuesday is the anchor "
        "day: every team is in the office on Tuesdays for planning and demos.",
        "The company contributes to a safe and comfortable home workplace as follows.",
    ],
)
REMOTE_EN_TABLE = [
    ("Item", "Amount", "Notes"),
    ("Home office allowance", "450 USD, once", "For a desk, chair or monitor; claim in Ledgerly"),
    ("Internet stipend", "40 USD per month", "Paid with salary"),
    ("Ergonomic assessment", "Free", "Book through Facilities"),
]
REMOTE_EN_OUTRO = [
    "Working from another country is allowed for up to 20 working days per calendar year and "
    "must be registered with People Operations at least 2 weeks in advance, because of tax "
    "and insurance rules.",
    "Remote workers must use the LumenLink VPN for all company systems and may not work from "
    "public networks without it.",
]

ONBOARDING_EN_MD = """\
---
title: Onboarding guide for new hires
owner: People Operations
last_reviewed: 2024-08-15
---

# Welcome to Lumen Robotics

This guide walks you through your first weeks. Your manager and your onboarding buddy will
help you with everything else.

## Your first day

- Arrive at **09:30** at the main reception of Building C on the Harbor Point Campus.
- Security hands you your access badge; bring a photo ID.
- Pick up your laptop at the IT Service Desk in **Room 3.14** on the third floor. It is
  already set up with your account.
- Lunch with your team is on the company.

## Your buddy

Every new hire gets an onboarding buddy from a neighbouring team for the first 8 weeks. Your
buddy is not your manager: ask them anything, from where the printers are to how releases work.

## Your first weeks

| When | What |
|------|------|
| Week 1 | Accounts, tools, meet the team, read the handbook |
| Week 2 | Security awareness training, first small task |
| Week 4 | 30-day check-in with your manager |

Everyone must complete the security awareness training within 10 business days of their
start date. The training takes about 90 minutes and is done online.

## Probation

The probation period is 4 months. Halfway through and at the end your manager holds a review
with you. Remote work starts after probation (see the Remote Work Policy).

## Useful commands

New engineers set up the robot simulator with:

    git clone https://git.lumen-robotics.example/sim/fleet-sim.git
    make setup

Questions? Write to onboarding@lumen-robotics.example.
"""

IT_SECURITY_ZH_TXT = """\
流明机器人信息安全守则

一、账号与密码
公司电脑和业务系统的密码至少 14 位，须同时包含大写字母、小写字母、数字和符号。
禁止多个系统使用同一密码，禁止将密码告诉他人或写在便签上。
所有员工必须启用多因素认证，使用“流明令牌”手机应用接收验证码。

二、设备使用
离开座位时必须锁定屏幕（Windows 按 Win+L，Mac 按 Control+Command+Q）。
电脑在无操作 5 分钟后会自动锁屏。
公司电脑不得安装来源不明的软件，需要新软件时请在 IT 服务门户提交申请。

三、设备丢失
笔记本电脑、手机或门禁卡丢失后，须在 2 小时内拨打 IT 服务热线（内线 6688）报告，
IT 部门会远程锁定设备并注销证书。

四、数据保护
禁止使用个人网盘或个人邮箱存储、传输公司资料。
客户数据只能保存在公司批准的系统中，离开公司网络访问内部系统必须使用 LumenLink VPN。

五、钓鱼邮件
收到可疑邮件时不要点击链接或打开附件，请转发至 phishing@lumen-robotics.example，
安全团队会在一个工作日内回复。

六、安全培训
全体员工须在每年 11 月底前完成年度信息安全培训，培训时长约 45 分钟。
违反本守则的行为将视情节轻重给予警告直至解除劳动合同。
"""

FAQ_ZH_MD = """\
# 行政常见问题（苏州办公室）

## 工资什么时候发放？

工资每月 10 日发放，遇节假日提前到最近的工作日。工资条可在 PeopleHub 系统查看。

## 有没有班车？

有。班车从地铁 1 号线星湖街站 2 号口出发，早上 7:50 至 9:20 每 15 分钟一班，
晚上 17:30 至 19:30 每 20 分钟一班返回地铁站。

## 快递寄到哪里？

个人和公司快递统一寄到一楼快递收发室 B102，收发室开放时间为工作日 9:00 至 18:00。
贵重物品请当天取走。

## 访客如何登记？

接待访客的员工须至少提前一天在“访客通”小程序登记访客姓名和手机号，访客到达后在前台
凭短信验证码领取临时门禁卡。

## 会议室不够用怎么办？

苏州办公室共有 12 间会议室。三楼的“银河”会议室可容纳 20 人，需提前两天预订。
"""

OFFICE_GUIDE_EN_HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Office Guide: Harbor Point | Lumen Intranet</title>
  <style>body { font-family: sans-serif; } nav a { margin: 0 1em; }</style>
  <script>window.analytics = { track: function () { /* tracking code */ } };</script>
</head>
<body>
  <header class="site-header">
    <div class="logo">Lumen Intranet</div>
    <form action="/search">
      <input name="q" placeholder="Search the intranet"><button>Go</button>
    </form>
  </header>
  <nav>
    <a href="/">Home</a> <a href="/careers">Careers at Lumen</a> <a href="/benefits">Benefits</a>
    <a href="/it">IT help</a>
  </nav>
  <main>
    <article>
      <h1>Office Guide: Harbor Point Campus</h1>
      <p>The Harbor Point office is in <strong>Building C</strong> and hosts about 210 people
      on four floors. This page answers the questions new colleagues and visitors ask most.</p>

      <h2>Opening hours</h2>
      <p>The building is open Monday to Friday from 07:30 to 20:00. Outside these hours you
      need to register with Security in advance. The building is closed at weekends.</p>

      <h2>Wi-Fi</h2>
      <p>Employees connect to the <em>Lumen-Corp</em> network with their company account.
      Visitors use the guest network <strong>Lumen-Guest</strong>; its password changes every
      Monday and is shown on the screen at reception.</p>

      <h2>Meeting rooms</h2>
      <p>Meeting rooms are booked in RoomBook. A single booking may last at most 2 hours;
      rooms not checked in within 10 minutes are released automatically.</p>

      <h2>Floors</h2>
      <table>
        <tr><th>Floor</th><th>What you find there</th></tr>
        <tr><td>Ground floor</td><td>Reception, Security, parcel room</td></tr>
        <tr><td>2nd floor</td><td>Kitchen with free coffee and fruit, lounge</td></tr>
        <tr><td>3rd floor</td><td>IT Service Desk, engineering teams</td></tr>
        <tr><td>4th floor</td><td>Quiet zone and the robot test lab</td></tr>
      </table>

      <h2>Parking and bicycles</h2>
      <ul>
        <li>The garage has 40 parking spaces; permits are issued by Facilities.</li>
        <li>Two charging points for electric cars are free to use for up to 4 hours.</li>
        <li>Covered bicycle racks and showers are next to the north entrance.</li>
      </ul>
    </article>
  </main>
  <aside class="news">
    <h3>Latest news</h3>
    <p>The summer party takes place on the roof terrace!</p>
  </aside>
  <footer>
    <p>&copy; 2024 Lumen Robotics &middot; Privacy &middot; Contact the intranet team</p>
  </footer>
  <script>window.analytics.track("page_view");</script>
</body>
</html>
"""

QUESTIONS = [
    {
        "question": "How many days of paid annual leave do full-time employees get per year?",
        "expected": "23",
        "language": "en",
    },
    {
        "question": "What is the name of the guest Wi-Fi network?",
        "expected": "Lumen-Guest",
        "language": "en",
    },
    {
        "question": "Where do new hires pick up their laptop?",
        "expected": "3.14",
        "language": "en",
    },
    {
        "question": "How much is the one-time home office allowance?",
        "expected": "450",
        "language": "en",
    },
    {
        "question": "一线城市出差住宿标准是每晚多少元？",
        "expected": "650",
        "language": "zh",
    },
    {
        "question": "年度体检的额度是多少？",
        "expected": "1800",
        "language": "zh",
    },
    {
        "question": "公司电脑的密码至少需要多少位？",
        "expected": "14",
        "language": "zh",
    },
    {
        "question": "快递应该寄到哪里？",
        "expected": "B102",
        "language": "zh",
    },
]

# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def write_pdf(
    path: Path, title: str, sections: Sequence[Section], font: Path | None = None
) -> None:
    """A simple text PDF; ``font`` (TTF/TTC) is needed for Chinese, else Helvetica is used."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(title)
    pdf.set_author("Lumen Robotics")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    family = "Helvetica"
    if font is not None:
        pdf.add_font("cjk", "", str(font))
        family = "cjk"
    pdf.add_page()
    pdf.set_font(family, size=16)
    pdf.multi_cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for heading, paragraphs in sections:
        pdf.set_font(family, size=13)
        pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        pdf.ln(2)
    pdf.output(str(path))


def write_docx(
    path: Path,
    title: str,
    intro: Sequence[str],
    table: Sequence[Sequence[str]],
    outro: Sequence[str],
) -> None:
    """A Word file with a heading, paragraphs, a table, and more paragraphs after it."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.core_properties.author = "Lumen Robotics"
    document.core_properties.created = FIXED_DATE.replace(tzinfo=None)
    document.core_properties.modified = FIXED_DATE.replace(tzinfo=None)
    document.core_properties.last_modified_by = "Lumen Robotics"
    document.core_properties.revision = 1
    document.add_heading(title, level=1)
    for paragraph in intro:
        document.add_paragraph(paragraph)
    grid = document.add_table(rows=0, cols=len(table[0]))
    grid.style = "Table Grid"
    for row in table:
        cells = grid.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = value
    for paragraph in outro:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(_with_fixed_zip_dates(buffer.getvalue()))


def _with_fixed_zip_dates(data: bytes) -> bytes:
    """Rewrite a .docx (a zip) with fixed member dates, so regenerating gives the same bytes."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE.timetuple()[:6])
            member.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(member, source.read(info.filename))
    return out.getvalue()


def _no_break_spaces(document: tuple[str, Sequence[Section]]) -> tuple[str, list[Section]]:
    """Make fpdf2 wrap Chinese lines where they are full, as Word and browsers do.

    fpdf2 prefers to break a line at a space when it has one, which for Chinese text with a
    few spaces around numbers gives ragged, half-empty lines. With no-break spaces it breaks
    at the last character that fits, like real Chinese PDFs; pypdf extracts them as spaces.
    """
    title, sections = document
    return title, [
        (heading, [paragraph.replace(" ", "\u00a0") for paragraph in paragraphs])
        for heading, paragraphs in sections
    ]


def find_cjk_font(explicit: str | None) -> Path:
    """The CJK font to embed in the Chinese PDF; fail with the package to install."""
    candidates = [explicit] if explicit else list(CJK_FONTS)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SystemExit(
        "no CJK font found; install one (apt-get install fonts-wqy-microhei) or pass --font"
    )


def generate(out: Path, font: Path) -> list[Path]:
    """Write every sample file into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def target(name: str) -> Path:
        written.append(out / name)
        return out / name

    write_pdf(target("handbook_en.pdf"), *HANDBOOK_EN)
    write_pdf(target("travel_zh.pdf"), *_no_break_spaces(TRAVEL_ZH), font=font)
    write_docx(
        target("benefits_zh.docx"),
        BENEFITS_ZH_INTRO[0],
        BENEFITS_ZH_INTRO[1],
        BENEFITS_ZH_TABLE,
        BENEFITS_ZH_OUTRO,
    )
    write_docx(
        target("remote_work_en.docx"),
        REMOTE_EN_INTRO[0],
        REMOTE_EN_INTRO[1],
        REMOTE_EN_TABLE,
        REMOTE_EN_OUTRO,
    )
    target("onboarding_en.md").write_text(ONBOARDING_EN_MD, encoding="utf-8")
    # GB18030 with Windows line endings: how a Chinese Notepad user would save it.
    target("it_security_zh.txt").write_bytes(
        IT_SECURITY_ZH_TXT.replace("\n", "\r\n").encode("gb18030")
    )
    target("faq_zh.md").write_text(FAQ_ZH_MD, encoding="utf-8")
    target("office_guide_en.html").write_text(OFFICE_GUIDE_EN_HTML, encoding="utf-8")
    target("questions.json").write_text(
        json.dumps(QUESTIONS, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--font", help="path of a CJK TTF/TTC font for the Chinese PDF")
    args = parser.parse_args()
    for path in generate(args.out, find_cjk_font(args.font)):
        print(f"{path.stat().st_size:>8} {path}")


if __name__ == "__main__":
    main()
