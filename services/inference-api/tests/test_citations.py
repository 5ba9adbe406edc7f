"""Citations: the sources that fitted the prompt, each with how much of the answer it quoted."""
from __future__ import annotations

from llmtwin.domain import Chunk, DocumentKind, Platform
from twin_inference.answers import Sources
from twin_inference.links import LinkedMaterial
from twin_inference.retrieval import Passage

QUOTED = "Start with the smallest model that could possibly work and the cleanest data you can afford."


def passage(name: str, text: str) -> Passage:
    chunk = Chunk(id=name, document_id=f"doc-{name}", twin_id="ada", platform=Platform.BLOG,
                  kind=DocumentKind.POST, link=f"https://ada.example/{name}", position=0, text=text)
    return Passage(chunk, 0.9)


def test_each_cited_source_says_how_many_words_of_the_answer_it_quoted():
    page = LinkedMaterial(link="https://news.example/a", final_url="https://news.example/a", title="A page",
                          text="Regulators want every model card to list its training data sources in full detail.")
    sources = Sources(links=[page], passages=[passage("small", QUOTED), passage("other", "Kafka moves events."),
                                              passage("cut", QUOTED)])
    answer = ("My rule: start with the smallest model that could possibly work and the cleanest data. "
              "Regulators want every model card to list its training data sources, and so do I.")

    cited = sources.citations(used=3, answer=answer)

    # "with the smallest ... the cleanest": 11 words ("start" and "data." differ); the page: 10 ("sources,").
    assert [(c["chunk_id"], c["copied_words"]) for c in cited["documents"]] == [("small", 11), ("other", 0)]
    assert [(c["title"], c["copied_words"]) for c in cited["links"]] == [("A page", 10)]
    # A run of seven words is phrasing, not a quote.
    assert sources.citations(used=3, answer="the smallest model that could possibly work")["documents"][0][
        "copied_words"] == 0
