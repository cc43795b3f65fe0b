"""Write the Chinese evaluation set: four handbook documents and their questions.

The documents (a leave policy in Markdown, an expenses policy in PDF, IT security rules in
Word, an office guide in HTML) and every question were written for this project; they are
under the project's licence (Apache-2.0), see ``bench/data/zh_handbook/README.md``.

Questions are generated from facts: each fact is a gold answer that occurs verbatim in one
document, asked two or three ways; table rows are asked through templates (one per column).
Off-topic questions ask what the documents do not say, some with words the documents use.
The script checks that every gold answer can be found in the text the real loader extracts.

    python bench/make_zh_eval.py [--font PATH]     # rewrites bench/data/zh_handbook/

The PDF needs a CJK TrueType font (Debian: ``fonts-wqy-microhei``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from make_samples import FIXED_DATE, find_cjk_font
from ragserve.kb.loaders import load_path

OUT = Path(__file__).resolve().parent / "data" / "zh_handbook"


@dataclass(frozen=True)
class Section:
    heading: str
    paragraphs: tuple[str, ...] = ()
    table: tuple[tuple[str, ...], ...] = ()
    new_page: bool = False  # PDF only: start the section on a new page


@dataclass(frozen=True)
class Document:
    source: str
    title: str
    sections: tuple[Section, ...]


LEAVE = Document(
    "leave_zh.md",
    "青禾科技请假制度",
    (
        Section(
            "年假",
            (
                "正式员工入职满一年后享有带薪年假。工龄满1年不满10年的，每年年假为5天；"
                "满10年不满20年的，每年年假为10天；满20年及以上的，每年年假为15天。",
                "年假须至少提前3个工作日在“青禾OA”系统中提交申请，由直属主管审批。",
                "当年未休完的年假可以顺延至次年3月31日，逾期作废，不折算工资。",
            ),
        ),
        Section(
            "病假",
            (
                "员工因病不能上班的，应在当天上午9点30分前通知直属主管。",
                "连续病假3天及以上的，须提交二级以上医院出具的诊断证明。",
                "病假期间的工资按本人基本工资的80%发放。",
            ),
        ),
        Section(
            "其他假期",
            ("除年假和病假外，员工还可享受以下假期，均为带薪假期：",),
            (
                ("假期类型", "天数", "说明"),
                ("婚假", "13天", "须在领取结婚证后一年内休完"),
                ("产假", "158天", "含国家规定的98天"),
                ("陪产假", "15天", "须在子女出生后三个月内休完"),
                ("丧假", "3天", "直系亲属去世时享有"),
                ("育儿假", "每年10天", "子女未满三周岁时享有"),
            ),
        ),
        Section(
            "请假审批",
            (
                "请假1天以内由直属主管审批；超过3天的，还须部门总监审批；"
                "超过10天的，须报人力资源部备案。",
                "未经批准擅自离岗的，按旷工处理，旷工1天扣除3天工资。",
            ),
        ),
    ),
)

EXPENSES = Document(
    "expenses_zh.pdf",
    "青禾科技费用报销办法",
    (
        Section(
            "第一章 报销流程",
            (
                "员工应在费用发生后30天内通过“青禾报销”系统提交报销单。",
                "单笔超过5000元的费用须由分管副总裁审批。",
                "财务部每周四集中付款，报销款项直接打入员工的工资卡。",
                "发票抬头须为“青禾科技有限公司”，纳税人识别号为91320500MA1QH7K2X5。",
            ),
        ),
        Section(
            "第二章 住宿标准",
            ("出差住宿按城市执行以下每晚上限，超出部分由个人承担：",),
            (
                ("城市", "每晚住宿上限"),
                ("北京", "680元"),
                ("上海", "660元"),
                ("广州", "560元"),
                ("深圳", "600元"),
                ("杭州", "520元"),
                ("南京", "480元"),
                ("成都", "450元"),
                ("武汉", "430元"),
                ("西安", "420元"),
            ),
            new_page=True,
        ),
        Section(
            "第三章 交通与餐补",
            (
                "出差期间每天的伙食补助为100元。",
                "乘坐高铁可选择二等座；单程超过6小时的，可乘坐飞机经济舱。",
                "市内交通费每天最多报销80元。",
                "使用私家车出差的，按每公里1.2元给予补贴。",
            ),
        ),
    ),
)

SECURITY = Document(
    "it_security_zh.docx",
    "青禾科技信息安全守则",
    (
        Section(
            "账号与密码",
            (
                "公司账号的密码长度至少为12位，须包含大小写字母、数字和符号。",
                "密码每90天必须更换一次，不得与最近5次使用过的密码相同。",
                "连续输错密码6次，账号将被锁定30分钟。",
                "所有员工必须在手机上启用“青禾令牌”进行双因素认证。",
            ),
        ),
        Section(
            "设备安全",
            (
                "离开座位时必须锁屏；电脑闲置10分钟后会自动锁屏。",
                "公司笔记本电脑必须开启BitLocker全盘加密。",
                "丢失公司设备须在2小时内报告信息安全部，电话为分机8110。",
                "禁止在公司电脑上安装未经授权的软件，安装软件须通过“软件中心”申请。",
            ),
        ),
        Section(
            "数据分级",
            ("公司数据分为四个级别，按级别存储和访问：",),
            (
                ("级别", "示例", "存储要求"),
                ("公开", "官网新闻稿", "无特殊要求"),
                ("内部", "组织架构图", "仅限存放在公司网盘"),
                ("机密", "客户合同", "加密存储，仅限授权人员访问"),
                ("绝密", "核心算法源代码", "存放在专用服务器，访问须经总监审批"),
            ),
        ),
        Section(
            "安全事件",
            (
                "发现钓鱼邮件应立即转发至security@qinghe.example，然后删除。",
                "每年11月举行一次全员信息安全培训；新员工须在入职两周内完成在线安全课程。",
            ),
        ),
    ),
)

OFFICE = Document(
    "office_zh.html",
    "苏州办公室指南",
    (
        Section(
            "办公时间",
            (
                "办公室的开放时间为工作日早上7点至晚上10点。",
                "公司的核心工作时间为上午10点至下午4点，其余时间可弹性安排。",
            ),
        ),
        Section(
            "门禁与访客",
            (
                "员工凭工卡进入大楼，工卡丢失后补办的费用为50元。",
                "访客须由接待员工提前一天在“访客通”小程序中登记。",
            ),
        ),
        Section(
            "会议室",
            ("会议室通过“青禾OA”预订，单次预订最长4小时。",),
            (
                ("会议室", "楼层", "容纳人数"),
                ("太湖", "3楼", "20人"),
                ("金鸡湖", "5楼", "12人"),
                ("独墅湖", "7楼", "8人"),
                ("阳澄湖", "6楼", "6人"),
            ),
        ),
        Section(
            "餐饮",
            (
                "员工餐厅位于2楼，午餐供应时间为11点30分至13点30分。",
                "员工在餐厅用餐，公司每餐补贴15元。",
            ),
        ),
        Section(
            "交通与停车",
            (
                "班车每天早上8点从星湖街地铁站2号口发车。",
                "地下车库共有120个车位，员工停车每月收费200元。",
                "快递收发室位于一楼B105室。",
            ),
        ),
    ),
)

DOCUMENTS = (LEAVE, EXPENSES, SECURITY, OFFICE)

# (document, gold answers, ways to ask). Each gold answer occurs verbatim in the document.
Fact = tuple[Document, tuple[str, ...], tuple[str, ...]]

FACTS: tuple[Fact, ...] = (
    (LEAVE, ("5天",), ("工龄5年的员工每年有几天年假？", "工龄不满10年，年假是多少天？")),
    (LEAVE, ("10天",), ("工龄15年的员工每年年假几天？", "满10年不满20年工龄的员工年假多少天？")),
    (LEAVE, ("15天",), ("工龄超过20年的员工有多少天年假？", "满20年工龄的年假天数是多少？")),
    (
        LEAVE,
        ("3个工作日",),
        ("年假要提前多久申请？", "申请年假需要提前几天？", "休年假应提前多少个工作日提交？"),
    ),
    (LEAVE, ("青禾OA",), ("年假在哪个系统里申请？", "请年假用什么系统提交？")),
    (
        LEAVE,
        ("3月31日",),
        (
            "没休完的年假能保留到什么时候？",
            "未休年假顺延的截止日期是哪天？",
            "年假最晚可以顺延到几月几日？",
        ),
    ),
    (LEAVE, ("9点30分",), ("生病请假最晚几点前要通知主管？", "病假需要在当天几点前告知直属主管？")),
    (LEAVE, ("3天",), ("连续病假几天以上需要提交诊断证明？", "病假多少天起要医院证明？")),
    (
        LEAVE,
        ("80%",),
        ("病假期间工资怎么发？", "病假工资按基本工资的多少比例发放？", "请病假时能拿到多少工资？"),
    ),
    (LEAVE, ("一年内",), ("婚假要在什么时间内休完？", "领结婚证后多久内必须休婚假？")),
    (LEAVE, ("98天",), ("产假中包含国家规定的多少天？", "158天产假里有几天是国家规定的？")),
    (LEAVE, ("三个月内",), ("陪产假必须在什么期限内休完？", "孩子出生后多久之内要休陪产假？")),
    (LEAVE, ("部门总监",), ("请假超过3天需要谁审批？", "超过三天的假期除了主管还要谁批准？")),
    (LEAVE, ("人力资源部",), ("请假超过10天要报哪个部门备案？", "长假需要向哪个部门备案？")),
    (
        LEAVE,
        ("3天工资",),
        ("旷工一天扣多少工资？", "擅自离岗一天会被扣几天工资？", "旷工的处罚是什么？"),
    ),
    (
        EXPENSES,
        ("30天",),
        (
            "费用发生后多少天内要提交报销？",
            "报销单的提交期限是多久？",
            "报销最晚要在费用发生后几天内提交？",
        ),
    ),
    (EXPENSES, ("青禾报销",), ("报销单在哪个系统提交？", "提交报销用什么系统？")),
    (EXPENSES, ("分管副总裁",), ("单笔超过5000元的费用由谁审批？", "大额费用需要谁批准？")),
    (EXPENSES, ("5000元",), ("单笔费用超过多少钱需要副总裁审批？", "副总裁审批的金额门槛是多少？")),
    (
        EXPENSES,
        ("每周四",),
        ("财务部什么时候付款？", "报销款哪天打款？", "财务部集中付款是星期几？"),
    ),
    (EXPENSES, ("工资卡",), ("报销的钱打到哪里？", "报销款会打入哪张卡？")),
    (EXPENSES, ("青禾科技有限公司",), ("发票抬头应该写什么？", "开发票时抬头填哪个公司名称？")),
    (
        EXPENSES,
        ("91320500MA1QH7K2X5",),
        ("公司的纳税人识别号是多少？", "开发票用的税号是什么？", "发票上的纳税人识别号填什么？"),
    ),
    (
        EXPENSES,
        ("100元",),
        ("出差每天的伙食补助是多少？", "出差餐补一天多少钱？", "出差期间每天有多少伙食补助？"),
    ),
    (EXPENSES, ("二等座",), ("坐高铁可以选什么座位？", "出差乘高铁能坐几等座？")),
    (EXPENSES, ("6小时",), ("单程超过多久可以坐飞机？", "什么情况下可以乘坐飞机经济舱？")),
    (EXPENSES, ("80元",), ("市内交通费每天最多报销多少？", "出差时市内交通一天能报多少钱？")),
    (
        EXPENSES,
        ("1.2元",),
        (
            "开私家车出差每公里补贴多少？",
            "私家车出差的补贴标准是什么？",
            "自驾出差按什么标准补贴？",
        ),
    ),
    (
        SECURITY,
        ("12位",),
        ("公司账号密码至少多少位？", "密码长度最少要几位？", "设置密码的最短长度是多少？"),
    ),
    (
        SECURITY,
        ("90天",),
        ("密码多久要换一次？", "密码更换的周期是多少天？", "多长时间必须修改一次密码？"),
    ),
    (
        SECURITY,
        ("5次",),
        ("新密码不能和最近几次用过的密码相同？", "密码不得与最近多少次的密码重复？"),
    ),
    (SECURITY, ("6次",), ("密码输错几次账号会被锁定？", "连续输错多少次密码会锁账号？")),
    (SECURITY, ("30分钟",), ("账号被锁定多长时间？", "输错密码被锁后多久才能解锁？")),
    (SECURITY, ("青禾令牌",), ("双因素认证用什么应用？", "手机上要启用什么做双因素认证？")),
    (SECURITY, ("10分钟",), ("电脑闲置多久会自动锁屏？", "多长时间不操作电脑会自动锁屏？")),
    (SECURITY, ("BitLocker",), ("公司笔记本要开启什么加密？", "笔记本电脑的全盘加密用什么？")),
    (
        SECURITY,
        ("2小时",),
        (
            "丢失公司设备要在多长时间内报告？",
            "设备丢了最晚多久要上报？",
            "公司电脑丢失后报告的时限是多少？",
        ),
    ),
    (SECURITY, ("8110",), ("信息安全部的电话分机是多少？", "丢失设备要打哪个分机？")),
    (SECURITY, ("软件中心",), ("在公司电脑上安装软件要通过什么申请？", "想装软件应该去哪里申请？")),
    (
        SECURITY,
        ("security@qinghe.example",),
        (
            "钓鱼邮件应该转发到哪个邮箱？",
            "收到钓鱼邮件要发给哪个地址？",
            "可疑邮件报告到哪个邮箱？",
        ),
    ),
    (SECURITY, ("11月",), ("全员信息安全培训在几月举行？", "每年什么时候有信息安全培训？")),
    (
        SECURITY,
        ("两周内",),
        ("新员工要在多久内完成安全课程？", "新人入职后多长时间内要学完在线安全课程？"),
    ),
    (
        OFFICE,
        ("早上7点至晚上10点",),
        (
            "办公室的开放时间是几点到几点？",
            "办公室几点开门几点关门？",
            "工作日办公室什么时候开放？",
        ),
    ),
    (
        OFFICE,
        ("上午10点至下午4点",),
        ("核心工作时间是什么时候？", "公司的核心工作时间是几点到几点？"),
    ),
    (OFFICE, ("50元",), ("工卡丢了补办要多少钱？", "补办工卡的费用是多少？")),
    (
        OFFICE,
        ("访客通",),
        ("访客在哪里登记？", "接待访客要用什么小程序登记？", "访客登记用哪个小程序？"),
    ),
    (OFFICE, ("提前一天",), ("访客需要提前多久登记？", "访客登记要提前几天？")),
    (OFFICE, ("4小时",), ("会议室单次最多能订多久？", "一次预订会议室的最长时间是多少？")),
    (OFFICE, ("2楼",), ("员工餐厅在几楼？", "食堂在哪一层？", "员工餐厅位于哪里？")),
    (
        OFFICE,
        ("11点30分至13点30分",),
        ("午餐供应时间是几点到几点？", "食堂中午几点开饭？", "员工餐厅午餐什么时候供应？"),
    ),
    (OFFICE, ("15元",), ("公司每餐补贴多少钱？", "在员工餐厅吃饭公司补贴多少？")),
    (
        OFFICE,
        ("星湖街地铁站2号口",),
        ("班车从哪里发车？", "班车的发车地点在哪？", "早上的班车在哪里上车？"),
    ),
    (OFFICE, ("8点",), ("班车每天几点发车？", "早上班车什么时候出发？")),
    (OFFICE, ("120个",), ("地下车库有多少个车位？", "公司车库一共几个停车位？")),
    (OFFICE, ("200元",), ("员工停车每月收费多少？", "在地下车库停车一个月多少钱？")),
    (OFFICE, ("B105",), ("快递收发室在哪里？", "快递应该去哪个房间取？", "快递收发室是几号房间？")),
)

# Table rows asked through templates: (document, table's section, column, answer column, asks).
TableTemplate = tuple[Document, str, int, int, tuple[str, ...]]

TEMPLATES: tuple[TableTemplate, ...] = (
    (LEAVE, "其他假期", 0, 1, ("{}有几天？", "员工可以休多少天{}？", "{}的天数是多少？")),
    (
        EXPENSES,
        "第二章 住宿标准",
        0,
        1,
        (
            "在{}出差，住宿每晚最多报销多少钱？",
            "{}的住宿标准是每晚多少元？",
            "去{}出差酒店费用上限是多少？",
        ),
    ),
    (SECURITY, "数据分级", 1, 0, ("{}属于哪个数据级别？", "{}的数据级别是什么？")),
    (SECURITY, "数据分级", 0, 2, ("{}级别的数据有什么存储要求？",)),
    (OFFICE, "会议室", 0, 1, ("{}会议室在几楼？", "{}会议室位于哪一层？")),
    (OFFICE, "会议室", 0, 2, ("{}会议室能坐多少人？", "{}会议室最多容纳几人？")),
)

# Questions the documents do not answer (the right reply is "not in the documents").
OFF_TOPIC: tuple[str, ...] = (
    "公司的股票代码是多少？",
    "年会在哪里举办？",
    "员工健身房几点开门？",
    "试用期有多长？",
    "公司成立于哪一年？",
    "可以带宠物来办公室吗？",
    "出国出差的住宿标准是多少？",
    "年终奖什么时候发放？",
    "员工的体检套餐包含哪些项目？",
    "公司有几位副总裁？",
    "离职需要提前多少天申请？",
    "加班费怎么计算？",
    "公司的总部在哪个城市？",
    "办公室可以吸烟吗？",
    "员工生日有什么福利？",
    "住房公积金的缴纳比例是多少？",
    "公司 Wi-Fi 的密码是什么？",
    "打印机在哪一层？",
    "员工可以申请几次内部转岗？",
    "公司的使命是什么？",
    "长城有多长？",
    "火星上有水吗？",
    "中国的首都是哪里？",
    "一年有多少个法定节假日？",
    "苏州的特产有哪些？",
    "如何申请公司的股票期权？",
    "笔记本电脑坏了去哪里修？",
    "员工可以在家办公几天？",
    "培训费用可以报销吗？",
    "新员工的导师是谁？",
    "公司电话会议用什么软件？",
    "招聘内推有没有奖金？",
    "办公室的空调温度是多少度？",
    "员工结婚可以领多少礼金？",
    "团建活动每年几次？",
    "How many days of annual leave do employees get in Germany?",
    "What is the CEO's name?",
    "黄山有多高？",
    "公司的客服电话是多少？",
    "报销时外币怎么换算？",
)


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    source: str | None
    kind: str  # "fact", "table" or "off_topic"

    def row(self) -> dict[str, object]:
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "source": self.source,
            "kind": self.kind,
        }


def questions() -> list[Question]:
    out: list[Question] = []
    for doc, answers, asks in FACTS:
        for ask in asks:
            out.append(Question(f"q{len(out) + 1:03d}", ask, answers, doc.source, "fact"))
    for doc, heading, key, value, asks in TEMPLATES:
        section = next(s for s in doc.sections if s.heading == heading)
        for row in section.table[1:]:
            for ask in asks:
                q = Question(
                    f"q{len(out) + 1:03d}", ask.format(row[key]), (row[value],), doc.source, "table"
                )
                out.append(q)
    for ask in OFF_TOPIC:
        out.append(Question(f"q{len(out) + 1:03d}", ask, (), None, "off_topic"))
    return out


# --------------------------------------------------------------------------- writers


def _table_rows(table: Sequence[Sequence[str]]) -> list[str]:
    return [" | ".join(row) for row in table]


def write_markdown(doc: Document, path: Path) -> None:
    lines = [f"# {doc.title}", ""]
    for section in doc.sections:
        lines += [f"## {section.heading}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.table:
            header, *rows = section.table
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def write_html(doc: Document, path: Path) -> None:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{doc.title}</title></head><body>",
        "<nav><a href='/'>首页</a> <a href='/hr'>人事</a></nav>",
        f"<main><h1>{doc.title}</h1>",
    ]
    for section in doc.sections:
        parts.append(f"<h2>{section.heading}</h2>")
        parts += [f"<p>{p}</p>" for p in section.paragraphs]
        if section.table:
            header, *rows = section.table
            parts.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
    parts.append("</main><footer>© 青禾科技</footer></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def write_docx(doc: Document, path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = doc.title
    document.core_properties.created = FIXED_DATE
    document.core_properties.modified = FIXED_DATE
    document.add_heading(doc.title, level=0)
    for section in doc.sections:
        document.add_heading(section.heading, level=1)
        for paragraph in section.paragraphs:
            document.add_paragraph(paragraph)
        if section.table:
            table = document.add_table(rows=0, cols=len(section.table[0]))
            for row in section.table:
                cells = table.add_row().cells
                for cell, text in zip(cells, row, strict=True):
                    cell.text = text
    document.save(str(path))


def write_pdf(doc: Document, path: Path, font: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(doc.title)
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_font("cjk", "", str(font))
    pdf.add_page()
    pdf.set_font("cjk", size=16)
    pdf.multi_cell(0, 9, doc.title, new_x="LMARGIN", new_y="NEXT")
    for section in doc.sections:
        if section.new_page:
            pdf.add_page()
        pdf.set_font("cjk", size=13)
        pdf.multi_cell(0, 8, section.heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=11)
        for paragraph in section.paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
        for line in _table_rows(section.table):
            pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    pdf.output(str(path))


def write_all(out: Path, font: Path) -> list[Question]:
    out.mkdir(parents=True, exist_ok=True)
    write_markdown(LEAVE, out / LEAVE.source)
    write_pdf(EXPENSES, out / EXPENSES.source, font)
    write_docx(SECURITY, out / SECURITY.source)
    write_html(OFFICE, out / OFFICE.source)
    asked = questions()
    texts = {doc.source: load_path(out / doc.source).text.replace(" ", "") for doc in DOCUMENTS}
    for q in asked:
        if q.source is not None and not any(
            a.replace(" ", "") in texts[q.source] for a in q.answers
        ):
            raise SystemExit(f"{q.id}: gold answer {q.answers} not found in {q.source}")
    with (out / "questions.jsonl").open("w", encoding="utf-8") as f:
        for q in asked:
            f.write(json.dumps(q.row(), ensure_ascii=False) + "\n")
    return asked


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--font", default=None, help="a CJK TTF/TTC font")
    args = parser.parse_args(argv)
    font = find_cjk_font(args.font)
    asked = write_all(args.out, font)
    kinds = {k: sum(q.kind == k for q in asked) for k in ("fact", "table", "off_topic")}
    print(f"wrote {len(DOCUMENTS)} documents and {len(asked)} questions {kinds} to {args.out}")


if __name__ == "__main__":
    main()
