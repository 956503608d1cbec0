"""Table tests for postprocess.reasoning: cleaning, quality checks and the QC loop bookkeeping."""
import pytest

from postprocess.reasoning import QCStats, ReasoningQC, check_reasoning, clean_reasoning, repeat_ratio

EMOTION = ["sadness", "joy", "love", "anger", "fear", "surprise"]
NLI = ["entailment", "not entailment"]

CLEAN_CASES = [
    # already clean
    ("The writer says they feel hopeless. That is sadness.", "The writer says they feel hopeless. That is sadness."),
    # chat artefacts, role words, headers
    ("The text is cheerful.<|eot_id|>", "The text is cheerful."),
    ("assistant\n\nThe text is cheerful.", "The text is cheerful."),
    ("<|start_header_id|>assistant<|end_header_id|>\n\nThe text is cheerful.<|eot_id|>", "The text is cheerful."),
    ("The text is cheerful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nMore?", "The text is cheerful."),
    ("<|im_start|>assistant\nShe is afraid.<|im_end|>", "She is afraid."),
    ("Reasoning: The writer is furious.", "The writer is furious."),
    ("**Reasoning:** The writer is furious.", "The writer is furious."),
    ("## Reasoning\n\nThe writer is furious.", "The writer is furious."),
    ("Reasoning:\nThe writer is furious.", "The writer is furious."),
    ("Reasoning about this text is easy. It is furious.", "Reasoning about this text is easy. It is furious."),
    # label lines removed wherever they are, trailing bare-label lines too
    ("The writer is furious.\n\nLabel: anger", "The writer is furious."),
    ("The writer is furious.\n\nlabel: ANGER.\nLabel: anger<|eot_id|>", "The writer is furious."),
    ("The writer is furious.\n**Label:** anger\n\n", "The writer is furious."),
    ("Label: anger\n\nThe writer is furious.", "The writer is furious."),
    ("The writer is furious, so anger. Label: anger", "The writer is furious, so anger."),
    ("The writer is furious.\n\n**Anger**", "The writer is furious."),
    ("The writer is furious.\n\nAnswer: anger", "The writer is furious."),  # no end mark: cut off
    ("The labels: anger and fear both fit. It is anger.", "The labels: anger and fear both fit. It is anger."),
    # cut-off endings
    ("She lost her job. She feels empty and", "She lost her job."),
    ("She lost her job! She feels empty and", "She lost her job!"),
    ('She wrote "I give up." Then she', 'She wrote "I give up."'),
    ('She wrote "I give up"', 'She wrote "I give up"'),
    ("She lost her job (and her home.) She feels", "She lost her job (and her home.)"),
    ("**She is sad.** Because", "**She is sad.**"),
    ("She feels empty and", "She feels empty and"),  # no complete sentence: kept as is
    ("Is she sad? Yes, because", "Is she sad?"),
    ("1. She cries.\n2. She is alone\n3. So it is", "1. She cries."),
    ("1. She cries\n2. She is alone\n3. So it is", "1. She cries\n2. She is alone\n3. So it is"),
    ("a. She cries.\nb. She", "a. She cries."),
    # whitespace
    ("The  writer\t is   sad.", "The writer is sad."),
    ("  First point.  \n\n\n\n\n  Second point.  ", "First point.\n\nSecond point."),
    ("One.\n  \n \nTwo.", "One.\n\nTwo."),
    # nothing left
    ("", ""),
    ("<|eot_id|>", ""),
    ("Label: joy", ""),
    ("assistant\n\nLabel: joy<|eot_id|>", ""),
]


@pytest.mark.parametrize("raw,expected", CLEAN_CASES)
def test_clean_reasoning(raw, expected):
    assert clean_reasoning(raw, EMOTION) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "Fine.\nLabel: joy\nMore.\n  label : joy\n**LABEL:** joy",
        "Label:joy\n\nGood.",
        "> Label: joy\nGood.\n- Label: joy",
    ],
)
def test_clean_reasoning_never_keeps_a_prefix_line(raw):
    cleaned = clean_reasoning(raw, EMOTION)
    assert cleaned
    assert not any(l.replace("*", "").lstrip("#>-_ ").lower().replace(" ", "").startswith("label:")
                   for l in cleaned.splitlines())


def test_clean_reasoning_custom_prefix():
    assert clean_reasoning("It follows.\nVerdict: entailment", NLI, prefix="Verdict:") == "It follows."
    assert clean_reasoning("It follows.\n\nNot Entailment", NLI) == "It follows."


STEPS = (
    "1. The text says \"i feel so helpless and alone since he left\".\n"
    "2. Feeling helpless and alone is a sign that the writer is hurting, not that the writer is afraid.\n"
    "3. The writer does not blame anyone, so anger does not fit either.\n"
    "4. The writer feels the absence of someone, and the writer misses him.\n"
    "5. Therefore, the emotion expressed in the text is sadness."
)
LOOP = "The writer feels sad. " * 8
NGRAM_LOOP = "She says that she is so so tired of everything and " * 6 + "that is sadness."

CHECK_CASES = [
    # passes
    ("The writer says she cried all night after her dog died. This grief points to sadness.", "sadness", None),
    ("The writer is thrilled about the promotion and cannot stop smiling, which shows joy.", "joy", None),
    ("The text talks about being shaking before the exam. Therefore the emotion is fear.", "fear", None),
    ("The writer is not angry at anyone but deeply hurt by the loss. This is sadness, not anger.", "sadness", None),
    ("While there is a hint of fear about the future, the main emotion is sadness.", "sadness", None),
    ("It might seem like fear at first, because of the word 'shocked'. But the outcome was unexpected, "
     "so the writer is mainly surprised: surprise.", "surprise", None),
    ("This is less about anger and more about love for her family. The emotion here is love.", "love", None),
    ("There is no anger or fear in the text; the writer simply adores her partner. So, love.", "love", None),
    ("The writer did not expect the gift and gasped. The emotion would be surprise rather than joy.",
     "surprise", None),
    (STEPS, "sadness", None),
    ("The writer misses her late mother and cries often. It is clearly not anger.", "sadness", None),
    ("The writer is grieving. Therefore the answer is not fear.", "sadness", None),
    ("She did not see the party coming at all. There is no fear here.", "surprise", None),
    ("She says she can't stop grinning. The writer doesn't show anger.", "joy", None),
    ("At first glance the emotion is fear, but she is laughing at the prank. She is caught off guard: surprise.",
     "surprise", None),
    ("The speaker describes a calm evening with friends and a warm feeling of gratitude.", "joy", None),
    ("One could classify this as anger, given the harsh words. However, it is joy overall.", "joy", None),
    ("The hypothesis follows from the premise, so the label is entailment.", "entailment", None),
    ("The premise says nothing about the weather. Therefore not entailment.", "not entailment", None),
    # empty / too short
    ("", "joy", "empty"),
    ("   \n ", "joy", "empty"),
    ("It is joy.", "joy", "too_short"),
    # looping
    (LOOP.strip(), "sadness", "looping"),
    (NGRAM_LOOP, "sadness", "looping"),
    ("joy " * 30, "joy", "looping"),
    # off-label: the conclusion names another label and not gold
    ("The writer feels betrayed by her friend. The emotion is anger.", "sadness", "off_label"),
    ("The writer is trembling and expects the worst. This is fear.", "surprise", "off_label"),
    ("The writer is happy. Therefore the answer is fear.", "joy", "off_label"),
    ("The word 'furious' stands out, so the emotion is anger. The writer also mentions the rain.",
     "sadness", "off_label"),
    ("Therefore, despite the kind words, anger. She mentions her brother too.", "love", "off_label"),
    ("There is a hint of fear, but the dominant emotion is sadness.", "fear", "off_label"),
    ("The text mentions joy briefly. It is more sadness than joy.", "joy", "off_label"),
    ("The premise implies the hypothesis. So it is entailment.", "not entailment", "off_label"),
    ("The premise contradicts it. Therefore not entailment.", "entailment", "off_label"),
]


@pytest.mark.parametrize("text,gold,expected", CHECK_CASES)
def test_check_reasoning(text, gold, expected):
    labels = NLI if gold in NLI else EMOTION
    assert check_reasoning(text, gold, labels) == expected


QUOTE_CASES = [
    # (reasoning, input text, gold): the last sentence quotes the input, which names another label
    ("The writer is grieving her dog. She writes that i feel so angry about love and loss.",
     "i feel so angry about love and loss", "sadness"),
    ("The writer cannot stop smiling. In her words: \"i am in love with this job\".",
     "i am in love with this job", "joy"),
    ("The writer was caught off guard. The text says 'i was surprised i felt no fear'.",
     "i was surprised i felt no fear", "surprise"),
]


@pytest.mark.parametrize("text,source,gold", QUOTE_CASES)
def test_check_reasoning_quoting_the_input_is_not_off_label(text, source, gold):
    """A quote of the input that contains another label's word is no verdict (it was one before)."""
    assert check_reasoning(text, gold, EMOTION, source_text=source) is None
    qc = ReasoningQC(EMOTION)
    assert qc.accept("x", gold, text, source_text=source) == text


def test_check_reasoning_copied_words_only_mask_the_copy():
    """Words outside the copied span still count: a verdict after the quote is still off-label."""
    text = "She writes i feel so angry about love. Therefore the emotion is anger."
    assert check_reasoning(text, "love", EMOTION, source_text="i feel so angry about love") == "off_label"


def test_check_reasoning_thresholds():
    text = "She smiles. She smiles. She laughs a lot today."
    assert check_reasoning(text, "joy", EMOTION) is None
    assert check_reasoning(text, "joy", EMOTION, max_repeat_ratio=0.3) == "looping"
    assert check_reasoning(text, "joy", EMOTION, min_chars=100) == "too_short"


def test_check_reasoning_rejects_unknown_gold():
    with pytest.raises(ValueError):
        check_reasoning("The writer is happy about it.", "happiness", EMOTION)


@pytest.mark.parametrize(
    "text,low,high",
    [
        ("The writer lost her job and feels hopeless about the future.", 0.0, 0.0),
        ("A b c d. A b c d.", 0.5, 0.5),
        (LOOP, 0.8, 1.0),
        ("", 0.0, 0.0),
    ],
)
def test_repeat_ratio(text, low, high):
    assert low <= repeat_ratio(text) <= high


GOOD = "The writer is grieving the loss of her father, which is sadness."
BAD = "The writer is grieving. Therefore the emotion is anger."


def test_qc_loop_counts_per_class():
    qc = ReasoningQC(EMOTION)
    gold = {"a": "sadness", "b": "sadness", "c": "joy"}
    rounds = [
        {"a": GOOD + "\n\nLabel: sadness<|eot_id|>", "b": BAD, "c": "short"},
        {"b": BAD, "c": "The writer is delighted with the gift, which shows joy."},
        {"b": ""},
    ]
    kept, todo = {}, dict(gold)
    for outputs in rounds:
        for id_, raw in outputs.items():
            r = qc.accept(id_, todo[id_], raw)
            if r is not None:
                kept[id_] = r
        todo = {i: g for i, g in todo.items() if i not in kept}
    for id_ in todo:
        qc.drop(id_)

    assert kept == {"a": GOOD, "c": "The writer is delighted with the gift, which shows joy."}
    assert qc.stats.to_dict() == {
        "per_class": {
            "joy": {"kept": 1, "retried": 1, "dropped": 0, "reasons": {"too_short": 1}},
            "sadness": {"kept": 1, "retried": 2, "dropped": 1, "reasons": {"empty": 1, "off_label": 2}},
        },
        "total": {"kept": 2, "retried": 3, "dropped": 1, "reasons": {"empty": 1, "off_label": 2, "too_short": 1}},
    }


def test_qc_drop_unknown_id_raises():
    with pytest.raises(KeyError):
        ReasoningQC(EMOTION).drop("never-seen")


def test_qcstats_record():
    s = QCStats()
    s.record("fear", "looping", retry=False)
    s.record("fear", None, retry=True)
    assert (s.kept["fear"], s.retried["fear"], s.reasons["fear", "looping"]) == (1, 1, 1)
    assert s.to_dict()["total"] == {"kept": 1, "retried": 1, "dropped": 0, "reasons": {"looping": 1}}
    assert QCStats().to_dict() == {"per_class": {}, "total": {"kept": 0, "retried": 0, "dropped": 0, "reasons": {}}}
