"""Cleaning rules on real-looking inputs."""
from __future__ import annotations

from llmtwin.domain import DocumentKind
from twin_cleaner.cleaning import (
    CleaningPolicy,
    clean_text,
    is_boilerplate,
    looks_like_phone,
    scrub_pii,
)

POLICY = CleaningPolicy(own_handles=frozenset({"paul-iusztin", "Paul Iusztin"}))

LINKEDIN_POST = """𝗪𝗵𝘆 𝗥𝗔𝗚 𝗯𝗲𝗮𝘁𝘀 𝗳𝗶𝗻𝗲-𝘁𝘂𝗻𝗶𝗻𝗴 for fresh data 🚀

Here is the thing:\r
→ 𝘙𝘦𝘵𝘳𝘪𝘦𝘷𝘢𝘭   keeps   answers grounded.
→ Fine-tuning teaches 𝚜𝚝𝚢𝚕𝚎.
  • nested point

Big thanks to @jane_doe for the review 🙏



♻️ Repost if you found this useful
Follow me for more content like this 👉
#AI #MLOps #LLM"""


def test_linkedin_post_keeps_voice_and_plain_letters():
    cleaned = clean_text(LINKEDIN_POST, DocumentKind.POST, POLICY)
    assert cleaned == (
        "**Why RAG beats fine-tuning** for fresh data 🚀\n"
        "\n"
        "Here is the thing:\n"
        "→ *Retrieval* keeps answers grounded.\n"
        "→ Fine-tuning teaches `style`.\n"
        "  • nested point\n"
        "\n"
        "Big thanks to [handle] for the review 🙏\n"
        "\n"
        "#AI #MLOps #LLM"
    )


def test_styled_letters_of_every_kind_become_plain():
    text = "𝐬𝐞𝐫𝐢𝐟 𝒃𝒐𝒍𝒅𝒊𝒕 𝓈𝒸𝓇𝒾𝓅𝓉 𝔣𝔯𝔞𝔨 𝕕𝕠𝕦𝕓𝕝𝕖 ｆｕｌｌ ﬁle ℎ 𝟭𝟮𝟯 ℬℂ ⓕⓐⓝⓒⓨ"
    assert clean_text(text, DocumentKind.POST, POLICY) == (
        "**serif** ***boldit*** script frak double full file *h* **123** BC fancy")


def test_emoji_sequences_and_punctuation_survive():
    text = "Ship it 👨‍💻… “quoted” — done ❤️ — 2 × 3 ≠ 5; m² ™ ℹ️ №1"
    assert clean_text(text, DocumentKind.POST, POLICY) == text


HTML_ARTICLE = """<h2>Why vectors?</h2>
<p>Vectors&nbsp;are cheap &amp; fast. Compare x &lt;y and y&gt; z, a <b>strong</b> and an <em>subtle</em> point.</p>
<!-- tracking pixel --><script>track()</script>
<ul><li>one</li><li>two</li></ul>
<pre><code class="language-python">def f(x):
\treturn x &lt; 3
</code></pre>
<p>Questions? Write to paul@example.com or call +40 721 234 567.</p>
<p>Subscribe to my newsletter</p>
Share this:
Originally published on Medium."""


def test_html_article_is_text_with_structure():
    cleaned = clean_text(HTML_ARTICLE, DocumentKind.ARTICLE, POLICY)
    assert cleaned == (
        "Why vectors?\n"
        "\n"
        "Vectors are cheap & fast. Compare x <y and y> z, a **strong** and an *subtle* point.\n"
        "\n"
        "- one\n"
        "- two\n"
        "\n"
        "```\n"
        "def f(x):\n"
        "\treturn x < 3\n"
        "```\n"
        "\n"
        "Questions? Write to [email] or call [phone]."
    )


def test_only_real_html_tags_are_stripped():
    assert clean_text("when x<y and y>z, List<String>", DocumentKind.POST, POLICY) == "when x<y and y>z, List<String>"
    assert clean_text("a <div class='x'>leftover</div> tag", DocumentKind.POST, POLICY) == "a leftover\n\ntag"


CODE = "import os\r\n\r\nclass A:\r\n\tdef f(self):\r\n\t\treturn  1   # two spaces\r\n\r\n\r\n\r\n\t@property\r\n\tdef g(self): return '@x'\x00\r\n   \r\n\r\n"


def test_code_keeps_indentation_tabs_and_inner_whitespace():
    cleaned = clean_text(CODE, DocumentKind.CODE, POLICY)
    assert cleaned == ("import os\n\nclass A:\n\tdef f(self):\n\t\treturn  1   # two spaces\n\n\n\n"
                       "\t@property\n\tdef g(self): return '@x'")


def test_code_scrubs_only_emails():
    code = "AUTHOR = 'ada@example.org'  # call 555-123-4567\n@decorator\ndef f(): pass"
    assert clean_text(code, DocumentKind.CODE, POLICY) == (
        "AUTHOR = '[email]'  # call 555-123-4567\n@decorator\ndef f(): pass")


def test_fenced_code_in_an_article_is_not_cleaned_as_prose():
    article = "Intro   text.\n\n```python\n@app.get('/x')\ndef  f():\n\treturn   1\n```\n\nOutro @jane."
    assert clean_text(article, DocumentKind.ARTICLE, POLICY) == (
        "Intro text.\n\n```python\n@app.get('/x')\ndef  f():\n\treturn   1\n```\n\nOutro [handle].")


def test_pii_own_handle_kept_and_others_scrubbed():
    text = ("Thanks @jane_doe and @PaulIusztin (me, @paul-iusztin)! Mail ada.l+ml@uni.example.co.uk, "
            "see https://medium.com/@jane_doe/post and user@host.io.")
    assert scrub_pii(text, POLICY) == ("Thanks [handle] and @PaulIusztin (me, @paul-iusztin)! Mail [email], "
                                       "see https://medium.com/@jane_doe/post and [email].")
    assert scrub_pii("@jane_doe wrote it\n@bob.smith too", POLICY) == "[handle] wrote it\n[handle] too"


def test_spaces_collapse_inside_lines_indentation_stays_and_boilerplate_lines_go():
    text = ("Follow me for more\nFirst\u00a0\u00a0line  with\tgaps   \n\t- tab item\n  \u3000- wide item\n"
            "   \nLast line\nShare this")
    assert clean_text(text, DocumentKind.ARTICLE, POLICY) == (
        "First line with gaps\n    - tab item\n   - wide item\n\nLast line")


def test_pii_policy_switches():
    text = "@jane_doe: mail jane@example.com, phone (555) 123-4567"
    assert scrub_pii(text, CleaningPolicy(scrub_handles=False)) == "@jane_doe: mail [email], phone [phone]"
    off = CleaningPolicy(scrub_emails=False, scrub_phones=False, scrub_handles=False)
    assert scrub_pii(text, off) == text


def test_phone_numbers_but_not_dates_versions_or_ranges():
    for phone in ("+40 721 234 567", "(555) 123-4567", "555.123.4567", "0044 20 7946 0958", "+1-202-555-0143"):
        assert looks_like_phone(phone), phone
    for other in ("2024-07-29", "2019-2023", "192.168.100.100", "1234567890", "12.05.2024"):
        assert not looks_like_phone(other), other
    assert scrub_pii("Events 2019-2023, v3.11.2, 1,000,000 users.", POLICY) == "Events 2019-2023, v3.11.2, 1,000,000 users."
    assert scrub_pii("Grew 2023\n2024 15% a year", POLICY) == "Grew 2023\n2024 15% a year"  # never across lines


def test_boilerplate_only_as_whole_short_lines():
    for line in ("Follow me on LinkedIn for more", "👉 Follow me for daily tips", "Subscribe", "Share this:",
                 "♻️ Repost if this helped", "Originally published at example.com", "Member-only story",
                 "Thanks for reading! Subscribe for free to receive new posts.", "7 min read"):
        assert is_boilerplate(line), line
    for line in ("I follow three rules when I design pipelines.", "Subscribers of the bus are idempotent.",
                 "Sharing is caring: here is why."):
        assert not is_boilerplate(line), line
