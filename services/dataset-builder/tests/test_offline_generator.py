"""The offline generator: the person's text verbatim as answers, instructions derived from it."""
from llmtwin.domain import DocumentKind, Platform, Split, split_for
from twin_dataset_builder.generators import OfflineGenerator
from twin_dataset_builder.sections import split_sections


async def test_a_post_is_one_sample_whose_instruction_names_platform_and_topic(post_doc):
    [sample] = await OfflineGenerator().generate([post_doc])
    assert sample.answer == post_doc.content.strip()
    assert sample.kind == DocumentKind.POST and sample.generator == "offline"
    assert "LinkedIn post" in sample.instruction
    assert "chunking" in sample.instruction.lower()  # the post's recurring topic


async def test_an_article_is_cut_at_its_headings_into_verbatim_sections(article_doc):
    samples = await OfflineGenerator().generate([article_doc])
    assert [s.answer.splitlines()[0] for s in samples] == [
        "# Why your feature pipeline needs a warehouse", "## Keep raw data immutable",
        "## Version the datasets, not only the models"]
    for sample in samples:
        assert sample.answer in article_doc.content
    # The sections together are the whole article: nothing of the person's text is lost.
    assert sum(len(s.answer.split()) for s in samples) == len(article_doc.content.split())
    assert '"Keep raw data immutable"' in samples[1].instruction
    assert "raw data" in samples[1].instruction
    assert "dataset version" in samples[2].instruction.lower()


async def test_long_sections_are_split_at_paragraphs_and_continue_their_heading(new_doc):
    paragraphs = [" ".join(f"Paragraph {p} explains streaming joins and watermarks in detail, step {i}."
                           for i in range(12)) for p in range(5)]
    doc = new_doc(DocumentKind.ARTICLE, "## Stream processing\n\n" + "\n\n".join(paragraphs), title="Streams")
    sections = split_sections(doc)
    assert len(sections) > 1
    assert all(s.heading == "Stream processing" for s in sections)
    assert [s.part for s in sections] == list(range(len(sections)))
    assert all(len(s.text.split()) <= 450 for s in sections)
    samples = await OfflineGenerator().generate([doc])
    assert "Stream processing" in samples[1].instruction


async def test_python_code_is_cut_into_functions_and_classes_named_in_the_instruction(code_doc):
    samples = await OfflineGenerator().generate([code_doc])
    assert [s.answer.split("(")[0].split(":")[0] for s in samples] == [
        "def load_config", "def merge_configs", "class ConfigCache"]
    for sample in samples:
        assert sample.answer in code_doc.content
        assert "Python" in sample.instruction
    assert "load_config" in samples[0].instruction
    assert "Read a JSON configuration file" in samples[0].instruction  # from the docstring
    assert "ConfigCache" in samples[2].instruction


async def test_code_that_is_not_python_is_cut_into_blocks_of_lines(new_doc):
    lines = [f"export function step{i}(input) {{ return input.map(x => x + {i}); }}" for i in range(90)]
    content = "\n".join(lines[:45]) + "\n\n" + "\n".join(lines[45:])
    doc = new_doc(DocumentKind.CODE, content, link="https://github.com/ada/web/blob/main/steps.ts")
    samples = await OfflineGenerator().generate([doc])
    assert len(samples) == 2
    assert "".join(s.answer for s in samples).replace("\n", "") == content.replace("\n", "")
    assert all("TypeScript" in s.instruction and "steps.ts" in s.instruction for s in samples)


async def test_output_is_deterministic_and_split_is_stable(post_doc, article_doc, code_doc):
    docs = [post_doc, article_doc, code_doc]
    first = await OfflineGenerator().generate(docs)
    second = await OfflineGenerator().generate(list(reversed(docs)))
    assert sorted(s.model_dump_json() for s in first) == sorted(s.model_dump_json() for s in second)
    assert all(s.split == split_for(s.id) for s in first)
    assert {Split.TRAIN} <= {s.split for s in first}


async def test_templates_vary_across_sections(new_doc):
    posts = [new_doc(DocumentKind.POST, f"Post number {i} about observability dashboards and alert fatigue "
                                        f"in on-call rotations, with lesson {i} learned the hard way.",
                     platform=Platform.LINKEDIN) for i in range(12)]
    samples = await OfflineGenerator().generate(posts)
    openings = {" ".join(s.instruction.split()[:5]) for s in samples}
    assert len(openings) >= 3


def test_a_paragraph_too_long_for_one_answer_is_cut_at_sentence_ends(new_doc):
    sentences = [f"Sentence {i} says something about backpressure in stream processors." for i in range(150)]
    doc = new_doc(DocumentKind.ARTICLE, " ".join(sentences), title="Backpressure")
    sections = split_sections(doc)
    assert len(sections) >= 3
    for section in sections:
        assert section.text in doc.content
        assert section.text.endswith(".") and len(section.text.split()) <= 450
