"""Quality filters: each rejection says why; good samples pass."""
from llmtwin.domain import DocumentKind, InstructSample
from twin_dataset_builder.quality import NearDuplicateIndex, QualityPolicy, filter_samples

POLICY = QualityPolicy()
GOOD = ("I spent the last month rewriting our deployment scripts, and the biggest lesson was that "
        "every manual step we kept for safety was the one that failed at night.")


def sample(answer: str, kind: DocumentKind = DocumentKind.POST, doc: str = "doc-1") -> InstructSample:
    return InstructSample.create(twin_id="ada", document_id=doc, kind=kind,
                                 instruction="Write a post about deployments.", answer=answer)


def reasons(*answers: str, kind: DocumentKind = DocumentKind.POST) -> list[str | None]:
    report = filter_samples([sample(a, kind, doc=f"doc-{i}") for i, a in enumerate(answers)],
                            NearDuplicateIndex(POLICY.near_duplicate_jaccard, POLICY.shingle_words), POLICY)
    by_answer = {r.sample.answer: r.reason for r in report.rejected}
    return [by_answer.get(a) for a in answers]


def test_good_prose_and_code_are_kept():
    assert reasons(GOOD) == [None]
    assert reasons("def add(a, b):\n    total = a + b\n    return total\n", kind=DocumentKind.CODE) == [None]


def test_length_limits():
    [short] = reasons("Great news, we shipped it!")
    assert short.startswith("too_short: 5 words")
    [long] = reasons(GOOD * 60)
    assert long.startswith("too_long:")
    [code] = reasons("x = 1", kind=DocumentKind.CODE)
    assert code.startswith("too_short: 1 code lines")


def test_text_that_is_not_english_prose_is_rejected():
    [german] = reasons("Wir haben im letzten Monat unsere Skripte für die Bereitstellung neu geschrieben und "
                       "gelernt, dass jeder manuelle Schritt nachts scheitert.")
    assert german.startswith("language:")
    [greek] = reasons("Τον τελευταίο μήνα ξαναγράψαμε τα σενάρια ανάπτυξης και μάθαμε ότι κάθε χειροκίνητο "
                      "βήμα αποτυγχάνει τη νύχτα, πάντα τη χειρότερη στιγμή.")
    assert greek.startswith("language:")


def test_boilerplate_is_rejected():
    [plug] = reasons("Thanks for reading! Subscribe to my newsletter to get the next article in your inbox "
                     "and follow me on LinkedIn for more.")
    assert plug.startswith("boilerplate:") and "subscribe to" in plug
    [menu] = reasons("Home\nAbout me\nProjects\nBlog\nContact\nNewsletter archive\nTalks and slides\n"
                     "Some longer line of text that is here as well as the others")
    assert menu.startswith("boilerplate: menu-like")
    [links] = reasons("#ai #ml #llm #rag #mlops #data https://a.example/x https://b.example/y "
                      "#python #career #jobs #hiring #tech #startup")
    assert links is not None
    # A plug at the end of a long, real post does not condemn the post.
    assert reasons(GOOD + " " + GOOD.replace("month", "year") + " " + GOOD.replace("night", "weekend")
                   + " Subscribe to my newsletter.") == [None]


def test_near_duplicates_within_the_twin_are_rejected_against_the_first_seen():
    edited = GOOD.replace("last month", "past month")
    first, second, third = reasons(GOOD, edited, "A completely different post about how we hire engineers and "
                                                 "what we ask in interviews these days.")
    assert first is None and third is None
    assert second.startswith("near_duplicate: of sample")


def test_index_finds_the_most_similar_answer_only_above_the_threshold():
    index = NearDuplicateIndex(threshold=0.75, shingle_words=3)
    index.add("a", GOOD)
    index.add("b", "Something else entirely, a note about gardening tomatoes on a small city balcony in June.")
    assert index.most_similar(GOOD)[0] == "a"
    assert index.most_similar(GOOD.replace("last month", "past month"))[0] == "a"
    assert index.most_similar("A short unrelated sentence about cooking pasta with fresh basil tonight.") is None
