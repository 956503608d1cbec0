"""Table tests for postprocess.labels.parse_label on real-looking model outputs."""
import pytest

from postprocess.labels import LABEL_INVALID, parse_label

EMOTION = ["sadness", "joy", "love", "anger", "fear", "surprise"]
NLI = ["entailment", "not entailment"]
HYPHEN = ["non-toxic", "toxic", "very toxic"]

CASES = [
    # plain and case
    ("Label: joy", EMOTION, "joy"),
    ("label: JOY", EMOTION, "joy"),
    ("LABEL:Fear", EMOTION, "fear"),
    ("Label : sadness", EMOTION, "sadness"),
    # punctuation and markdown around the label or the prefix
    ("Label: joy.", EMOTION, "joy"),
    ("Label: **joy**", EMOTION, "joy"),
    ("**Label:** joy", EMOTION, "joy"),
    ("**Label**: Anger", EMOTION, "anger"),
    ("### Label: love", EMOTION, "love"),
    ("Label: 'joy'", EMOTION, "joy"),
    ('Label: "surprise".', EMOTION, "surprise"),
    ("Label: `fear`", EMOTION, "fear"),
    ("Label: [anger]", EMOTION, "anger"),
    ("Label: “love”", EMOTION, "love"),
    # extra text after the label
    ("Label: joy (the text is happy)", EMOTION, "joy"),
    ("Label: joy - the writer is delighted", EMOTION, "joy"),
    ("Label: sadness, because she lost her dog.", EMOTION, "sadness"),
    # chat artefacts and whitespace
    ("Label: joy<|eot_id|>", EMOTION, "joy"),
    ("Label: fear<|end_of_text|>", EMOTION, "fear"),
    ("Label: anger  \n\n  ", EMOTION, "anger"),
    ("Label: joy<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nLabel: fear", EMOTION, "joy"),
    ("<|start_header_id|>assistant<|end_header_id|>\n\nLabel: love<|eot_id|>", EMOTION, "love"),
    ("assistant\n\nLabel: surprise</s>", EMOTION, "surprise"),
    ("Label: joy<|im_end|>", EMOTION, "joy"),
    # label on the line after a bare prefix
    ("Label:\njoy", EMOTION, "joy"),
    ("Label:\n\n  **Sadness**", EMOTION, "sadness"),
    # reasoning names other labels; the last prefix line wins
    ("The writer mentions fear of failing, but overall feels joy.\n\nLabel: joy", EMOTION, "joy"),
    ("This could look like joy at first.\n\nLabel: sadness", EMOTION, "sadness"),
    ("Label: joy\nOn reflection the tone is bitter.\nLabel: anger", EMOTION, "anger"),
    ("Label: joy\nLabel: fear\nLabel: love", EMOTION, "love"),
    ("The writer is thrilled, so I'd say joy. Label: joy", EMOTION, "joy"),
    # last prefix line invalid: never fall back to an earlier or mentioned label
    ("Label: joy\nLabel: happiness", EMOTION, LABEL_INVALID),
    ("The emotion is clearly joy.\n\nLabel: happiness", EMOTION, LABEL_INVALID),
    ("Label: joyful", EMOTION, LABEL_INVALID),
    ("Label: fearful", EMOTION, LABEL_INVALID),
    ("Label: the emotion is joy", EMOTION, LABEL_INVALID),
    ("Label:", EMOTION, LABEL_INVALID),
    ("Label: \n\n", EMOTION, LABEL_INVALID),
    ("Label: joy-filled", EMOTION, LABEL_INVALID),
    # ambiguous answers naming two labels
    ("Label: joy/love", EMOTION, LABEL_INVALID),
    ("Label: joy or love", EMOTION, LABEL_INVALID),
    ("Label: 'joy', 'love'", EMOTION, LABEL_INVALID),
    ("Label: anger and fear", EMOTION, LABEL_INVALID),
    # no prefix: only an exact label is accepted
    ("joy", EMOTION, "joy"),
    ("  Joy.  ", EMOTION, "joy"),
    ("**SADNESS**<|eot_id|>", EMOTION, "sadness"),
    ("'fear'", EMOTION, "fear"),
    ("The answer is joy", EMOTION, LABEL_INVALID),
    ("joy love", EMOTION, LABEL_INVALID),
    ("I feel joy.", EMOTION, LABEL_INVALID),
    ("", EMOTION, LABEL_INVALID),
    ("   \n", EMOTION, LABEL_INVALID),
    ("<|eot_id|>", EMOTION, LABEL_INVALID),
    # multi-word labels, one inside another, separators interchangeable
    ("Label: not entailment", NLI, "not entailment"),
    ("Label: Not Entailment.", NLI, "not entailment"),
    ("Label: not_entailment", NLI, "not entailment"),
    ("Label: not-entailment", NLI, "not entailment"),
    ("Label: entailment", NLI, "entailment"),
    ("It is not entailment.\nLabel: entailment", NLI, "entailment"),
    ("not entailment", NLI, "not entailment"),
    ("Label: not\nentailment", NLI, LABEL_INVALID),
    ("Label: non-toxic", HYPHEN, "non-toxic"),
    ("Label: toxic", HYPHEN, "toxic"),
    ("Label: Very Toxic!", HYPHEN, "very toxic"),
    ("Label: non toxic", HYPHEN, "non-toxic"),
]


@pytest.mark.parametrize("output,labels,expected", CASES)
def test_parse_label(output, labels, expected):
    assert parse_label(output, labels) == expected


@pytest.mark.parametrize(
    "output,prefix,expected",
    [
        ("Answer: fear", "Answer:", "fear"),
        ("answer:  Fear.", "Answer:", "fear"),
        ("Label: joy\nAnswer: fear", "Answer:", "fear"),
        ("Label: joy", "Answer:", LABEL_INVALID),
        ("Emotion - anger", "Emotion -", "anger"),
    ],
)
def test_parse_label_custom_prefix(output, prefix, expected):
    assert parse_label(output, EMOTION, prefix=prefix) == expected


def test_returns_canonical_label_object():
    labels = ["Positive", "Negative"]
    assert parse_label("label: positive", labels) == "Positive"


@pytest.mark.parametrize(
    "output",
    ["<|", "|>", "Label: (", "Label: [[[", "Label: \\", "Label: *" * 50, "\x00Label:\x00joy", "ß" * 1000,
     "Label: " + "joy " * 5000, "<|start_header_id|>", "Label: (?:joy)"],
)
def test_never_raises(output):
    assert parse_label(output, EMOTION) in EMOTION + [LABEL_INVALID]


REASONING_CASES = [
    # stage 2: the reasoning is what comes before the label line
    ("She lost her dog and cries.\n\nLabel: sadness", "She lost her dog and cries."),
    ("She lost her dog.\n\nLabel: sadness<|eot_id|>", "She lost her dog."),
    ("First I thought Label: joy.\nThen not.\n\nLabel: fear", "First I thought Label: joy.\nThen not."),
    # the label on the line after a bare prefix
    ("Because.\n\nLabel:\n\nanger", "Because."),
    # label first: the reasoning is what follows the label line
    ("Label: joy\n\nThe writer is delighted.", "The writer is delighted."),
    # baseline answers have no reasoning
    ("Label: joy", None),
    ("Joy.", None),
    # no label line (cut off by max_tokens): the whole output is the reasoning
    ("The writer seems to", "The writer seems to"),
    ("", None),
]


@pytest.mark.parametrize("output,reasoning", REASONING_CASES)
def test_answer_reasoning(output, reasoning):
    from postprocess.labels import answer_reasoning

    assert answer_reasoning(output, EMOTION) == reasoning
