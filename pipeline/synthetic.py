"""Synthetic stand-ins for the paper's data, so the whole pipeline runs offline on a CPU.

* `make_emotion_split` imitates dair-ai/emotion: short lower-case sentences without
  punctuation ("im feeling so hopeless about my job today"), the same class imbalance,
  and ~5% label noise. Each label has its own cue words, so a tiny model can learn it.
* `make_pair_split` is a sentence-pair task in the manner of SNLI: a premise about someone
  doing something somewhere, and a hypothesis that follows from it (entailment), conflicts
  with it (contradiction) or adds what it does not say (neutral). Other labels get a
  hypothesis built around the label's own cue words, so any label set works.
* `make_reasoning_set` is a toy "general reasoning" set for stage 1: a question, its answer
  and a one-sentence reasoning that states the answer first ("The answer is 10.").
* `tokenizer_corpus` is what the tiny tokenizer is trained on, so that the task data,
  the prompt templates and ordinary English tokenize compactly.

Everything is pure Python driven by `random.Random(seed)`: same arguments, same rows.
"""
from __future__ import annotations

import itertools
import random
import re
from pathlib import Path
from typing import Sequence

DAIR_LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")
# Class shares of the real dair-ai/emotion train split, in the order of DAIR_LABELS.
_DAIR_SHARES = (0.29, 0.34, 0.08, 0.13, 0.12, 0.04)
# Labels other than the six get shares proportional to RATIO**i: the last is the minority.
_GEOMETRIC_RATIO = 0.75
LABEL_NOISE = 0.05

_CUES = {
    "sadness": "hopeless miserable lonely depressed gloomy heartbroken unhappy devastated "
               "helpless crushed defeated empty ashamed homesick discouraged worthless "
               "regretful melancholy",
    "joy": "happy cheerful delighted content glad excited thrilled joyful satisfied proud "
           "relieved peaceful hopeful energetic lucky blessed",
    "love": "loving affectionate caring tender passionate romantic sweet devoted fond "
            "adoring supportive gentle longing sympathetic",
    "anger": "angry furious irritated annoyed resentful bitter frustrated outraged hostile "
             "cranky grumpy offended jealous spiteful",
    "fear": "scared afraid anxious nervous terrified worried frightened uneasy panicky "
            "insecure shaky paranoid tense restless",
    "surprise": "surprised amazed astonished shocked stunned curious impressed overwhelmed "
                "dazed startled speechless bewildered",
}
_CUES = {label: words.split() for label, words in _CUES.items()}
# Cue words handed out, in turn, to labels that have no entry in _CUES.
_SPARE_CUES = ("calm bored tired confused guilty disgusted hungry sleepy brave shy eager "
               "silly lazy busy grateful nostalgic serious weary dizzy mellow").split()

_INTENSIFIERS = ("", "so", "really", "a little", "very", "kind of", "quite", "pretty",
                 "totally", "somewhat", "incredibly", "a bit")
_ABOUT = ("about my job", "about my family", "about the whole situation", "at work",
          "about school", "about what happened", "around my friends", "about the future",
          "about my relationship", "about my body", "about this blog", "about my parents",
          "with my life", "about the house", "about my exams", "at home", "about money",
          "about the move", "about my health", "about the trip", "about the weekend",
          "about my sister", "about my brother", "about my boss", "about the news", "")
_WHEN = ("today", "right now", "this week", "tonight", "this morning", "lately",
         "again", "these days", "since last year", "after the meeting", "all day",
         "most of the time", "every time i think about it", "when i wake up", "")
_OPENERS = ("i feel {i} {c} {a} {w}", "im feeling {i} {c} {a} {w}", "i feel {i} {c}",
            "i am feeling {i} {c} {a} {w}", "i have been feeling {i} {c} {a} {w}",
            "i still feel {i} {c} {a} {w}", "i was feeling {i} {c} {w}",
            "i cant help but feel {i} {c} {a}", "honestly i feel {i} {c} {w}",
            "i think i feel {i} {c} {a}", "sometimes i feel {i} {c} {a} {w}",
            "i feel {i} {c} and i dont know why", "i just feel {i} {c} {w}")


def label_shares(labels: Sequence[str]) -> list[float]:
    """Class shares for `labels`: the real ones for dair-ai's six, else geometric."""
    if tuple(labels) == DAIR_LABELS:
        return list(_DAIR_SHARES)
    weights = [_GEOMETRIC_RATIO ** i for i in range(len(labels))]
    return [w / sum(weights) for w in weights]


def _label_counts(n: int, shares: Sequence[float]) -> list[int]:
    """Largest-remainder apportionment: exact shares, and every label present once n allows."""
    raw = [n * s for s in shares]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i, c in enumerate(counts):
        if c == 0 and n >= len(counts):
            counts[i] = 1
            counts[counts.index(max(counts))] -= 1
    return counts


def cue_words(labels: Sequence[str]) -> dict[str, list[str]]:
    """Each label's cue words: its lexicon entry, else its own name plus up to three
    spare words that no other label uses (only the name once the spares run out)."""
    spare = iter([w for w in _SPARE_CUES if w not in labels])
    return {label: _CUES.get(label) or [label, *itertools.islice(spare, 3)] for label in labels}


def _sentence(rng: random.Random, cues: Sequence[str]) -> tuple[str, str]:
    """One dair-style sentence built around a cue word; returns (text, cue)."""
    cue = rng.choice(cues)
    text = rng.choice(_OPENERS).format(i=rng.choice(_INTENSIFIERS), c=cue,
                                       a=rng.choice(_ABOUT), w=rng.choice(_WHEN))
    return " ".join(text.split()), cue


def make_emotion_split(n_train: int, n_test: int, labels: Sequence[str], seed: int = 0,
                       *, noise: float = LABEL_NOISE) -> tuple[list[dict], list[dict]]:
    """Train and test rows `{"text", "label"}` with the real class imbalance.

    A `noise` share of rows carries another label's cue word (the label is kept, so the
    class counts stay exact). No text appears twice, within or across the splits.
    """
    if len(labels) < 2:
        raise ValueError(f"need at least two labels, got {list(labels)}")
    rng = random.Random(seed)
    cues, shares, seen = cue_words(labels), label_shares(labels), set()

    def split(n: int) -> list[dict]:
        row_labels = [lab for lab, c in zip(labels, _label_counts(n, shares)) for _ in range(c)]
        rng.shuffle(row_labels)
        rows = []
        for label in row_labels:
            source = label
            if rng.random() < noise:
                source = rng.choice([other for other in labels if other != label])
            for _ in range(1000):
                text, _cue = _sentence(rng, cues[source])
                if text not in seen:
                    break
            else:
                raise ValueError(f"cannot make {n_train + n_test} distinct texts for {labels}")
            seen.add(text)
            rows.append({"text": text, "label": label})
        return rows

    train = split(n_train)
    return train, split(n_test)


# ---- sentence pairs -----------------------------------------------------------------

# (activity, a more general wording of it, an activity that cannot happen at the same time)
_ACTS = (("playing the guitar", "making music", "sleeping"),
         ("riding a bicycle", "outside on a bike", "sitting on a sofa"),
         ("cooking dinner", "preparing food", "swimming in a lake"),
         ("reading a book", "reading", "running a race"),
         ("painting a fence", "working with paint", "watching television"),
         ("walking a dog", "out with an animal", "driving a truck"),
         ("climbing a tree", "climbing", "lying in bed"),
         ("washing a car", "cleaning something", "flying a plane"),
         ("singing a song", "making music", "eating soup"),
         ("kicking a ball", "playing a game", "taking a nap"))
_PLACES = ("in the park", "at the beach", "in a small kitchen", "on a busy street", "in the garden",
           "at school", "near the river", "in front of a house", "at the market", "on a farm")
_PEOPLE = ("a young man", "an old woman", "a little girl", "a boy", "a student", "a tall man",
           "a woman in a red coat", "a child", "a girl with a backpack", "a man with a hat")
_EXTRAS = ("because it is his birthday", "for the first time", "to win a prize", "while waiting for a friend",
           "before going to work", "with a friend", "after a long day", "for a school project")
_NLI = ("entailment", "neutral", "contradiction")


def _hypothesis(rng: random.Random, label: str, who: str, act: tuple[str, str, str], where: str,
                cues: Sequence[str]) -> str:
    """The hypothesis that stands in relation `label` to the premise `who is act[0] where`."""
    if label == "entailment":
        return rng.choice([f"someone is {act[1]}", f"{who} is {act[1]}", f"a person is {act[0]} {where}"])
    if label == "contradiction":
        return rng.choice([f"{who} is {act[2]}", f"nobody is {act[0]}", f"{who} is {act[2]} {where}"])
    if label == "neutral":
        return f"{who} is {act[0]} {rng.choice(_EXTRAS)}"
    return f"{who} feels {rng.choice(cues)} {where}"


def make_pair_split(n_train: int, n_test: int, labels: Sequence[str], fields: Sequence[str], seed: int = 0,
                    *, noise: float = LABEL_NOISE) -> tuple[list[dict], list[dict]]:
    """Train and test rows `{<fields[0]>: premise, <fields[1]>: hypothesis, "label"}`, with the class
    shares of `label_shares` (balanced for the three NLI labels, as SNLI is). A `noise` share of
    rows gets the hypothesis of another label (the label is kept). No pair appears twice."""
    if len(fields) != 2 or len(labels) < 2:
        raise ValueError(f"a sentence-pair task needs two text fields and two labels, got {list(fields)}, {list(labels)}")
    rng = random.Random(seed)
    cues, seen = cue_words(labels), set()
    shares = [1 / len(labels)] * len(labels) if set(labels) <= set(_NLI) else label_shares(labels)

    def split(n: int) -> list[dict]:
        row_labels = [lab for lab, c in zip(labels, _label_counts(n, shares)) for _ in range(c)]
        rng.shuffle(row_labels)
        rows = []
        for label in row_labels:
            source = rng.choice([o for o in labels if o != label]) if rng.random() < noise else label
            for _ in range(1000):
                who, act, where = rng.choice(_PEOPLE), rng.choice(_ACTS), rng.choice(_PLACES)
                pair = (f"{who} is {act[0]} {where}", _hypothesis(rng, source, who, act, where, cues[source]))
                if pair not in seen:
                    break
            else:
                raise ValueError(f"cannot make {n_train + n_test} distinct pairs for {labels}")
            seen.add(pair)
            rows.append({fields[0]: pair[0], fields[1]: pair[1], "label": label})
        return rows

    train = split(n_train)
    return train, split(n_test)


# ---- toy general-reasoning set ------------------------------------------------------

_CATEGORIES = {
    "fruit": "apple banana cherry grape lemon mango peach pear plum orange",
    "animal": "cat dog horse rabbit tiger lion sheep goat mouse bear",
    "color": "red blue green yellow purple pink brown white black gray",
    "tool": "hammer saw drill wrench shovel rake chisel pliers axe ladder",
    "vehicle": "car bus truck train bicycle boat plane tractor scooter van",
    "instrument": "piano guitar violin drum flute trumpet harp cello banjo organ",
    "body part": "hand foot knee elbow shoulder finger ankle wrist nose ear",
}
_CATEGORIES = {cat: words.split() for cat, words in _CATEGORIES.items()}
_NAMES = "Ann Bob Carl Dana Eve Finn Gina Hugo Ivy Jack Kate Leo Mia Noah Omar Pia".split()
_TRAITS = (("taller", "shorter"), ("older", "younger"), ("faster", "slower"),
           ("heavier", "lighter"), ("richer", "poorer"))
_PRAISE = "wonderful excellent delightful brilliant charming enjoyable superb lovely".split()
_BLAME = "terrible awful boring dreadful disappointing painful dull horrible".split()
_REVIEWED = ("movie", "book", "meal", "concert", "hotel", "game", "show", "trip", "album",
             "play", "course", "phone")
_DEGREES = ("", "really", "truly", "quite", "so", "very", "rather", "just")
_OPS = (("plus", lambda a, b: a + b), ("minus", lambda a, b: a - b), ("times", lambda a, b: a * b))


def _q_emotion(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(DAIR_LABELS)
    text, _cue = _sentence(rng, _CUES[label])
    return f'What feeling does this sentence express: "{text}"?', label


def _q_sentiment(rng: random.Random) -> tuple[str, str]:
    thing, positive = rng.choice(_REVIEWED), rng.random() < 0.5
    word = rng.choice(_PRAISE if positive else _BLAME)
    review = " ".join(f"the {thing} was {rng.choice(_DEGREES)} {word}".split())
    return f"Is this review positive or negative: {review}?", "positive" if positive else "negative"


def _q_arithmetic(rng: random.Random) -> tuple[str, str]:
    word, fn = rng.choice(_OPS)
    a, b = (rng.randint(2, 12), rng.randint(2, 12)) if word == "times" else \
        (rng.randint(2, 50), rng.randint(2, 20))
    if word == "minus" and b > a:
        a, b = b, a
    return f"What is {a} {word} {b}?", str(fn(a, b))


def _q_compare_numbers(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(range(1, 100), 2)
    if rng.random() < 0.5:
        return f"Which number is larger, {a} or {b}?", str(max(a, b))
    return f"Which number is smaller, {a} or {b}?", str(min(a, b))


def _q_compare_people(rng: random.Random) -> tuple[str, str]:
    x, y = rng.sample(_NAMES, 2)
    more, less = rng.choice(_TRAITS)
    if rng.random() < 0.5:
        return f"{x} is {more} than {y}. Who is {less}?", y
    return f"{x} is {more} than {y}. Who is {more}?", x


def _q_odd_one_out(rng: random.Random) -> tuple[str, str]:
    cat, odd_cat = rng.sample(sorted(_CATEGORIES), 2)
    group, odd = rng.sample(_CATEGORIES[cat], 3), rng.choice(_CATEGORIES[odd_cat])
    words = group + [odd]
    rng.shuffle(words)
    return f"Which word does not belong: {', '.join(words)}?", odd


_QUESTION_KINDS = (_q_emotion, _q_sentiment, _q_arithmetic, _q_compare_numbers,
                   _q_compare_people, _q_odd_one_out)


def make_reasoning_set(n: int, seed: int = 0) -> list[dict]:
    """`n` rows `{"question", "answer", "reasoning"}`, the kinds mixed evenly, questions unique.

    The reasoning states the answer in its first words ("The answer is 10."), nothing more. The
    tiny model must learn to copy the answer from the stage-1 prompt, at a fixed distance before
    the reasoning; a longer rationale after it (the evidence, a second sentence) outweighs that
    one token in the loss, and a tiny model trained for a few hundred steps then writes the most
    frequent label instead of the one it is given, so its reasonings tell stage 2 nothing.
    """
    rng = random.Random(seed)
    kinds = [_QUESTION_KINDS[i % len(_QUESTION_KINDS)] for i in range(n)]
    rng.shuffle(kinds)
    rows, seen = [], set()
    for kind in kinds:
        for _ in range(1000):
            question, answer = kind(rng)
            if question not in seen:
                break
        else:
            raise ValueError(f"cannot make {n} distinct reasoning questions")
        seen.add(question)
        rows.append({"question": question, "answer": answer, "reasoning": f"The answer is {answer}."})
    return rows


# ---- tokenizer corpus ---------------------------------------------------------------

_PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)

# Frequent English words, so real dair-ai/emotion text does not fall apart into bytes.
_COMMON_WORDS = """
the be to of and a in that have i it for not on with he as you do at this but his by from
they we say her she or an will my one all would there their what so up out if about who get
which go me when make can like time no just him know take people into year your good some
could them see other than then now look only come its over think also back after use two how
our work first well way even new want because any these give day most us is are was were been
has had did does said made went got came took saw knew thought told felt became left put
meant kept let began seemed helped showed heard played ran moved lived believed brought
happened wrote sat stood lost paid met included continued set learned changed led understood
watched followed stopped created spoke read spent grew opened walked won offered remembered
loved considered appeared bought waited served died sent expected built stayed fell cut
reached killed remained suggested raised passed sold required reported decided pulled
im ive dont cant didnt doesnt wasnt isnt wont wouldnt couldnt shouldnt youre theyre thats
its whats ill id hes shes were arent havent hadnt lets
feel feeling feelings felt feels really very much more still never always ever often
sometimes maybe probably actually pretty quite rather kind sort bit little lot lots
something nothing anything everything someone anyone everyone nobody somebody everybody
thing things stuff way ways life world home house family friend friends mother father mom
dad mum parents sister brother son daughter husband wife boyfriend girlfriend partner
baby child children kid kids man woman men women girl boy guy guys person people
job work school class college university teacher student boss office team company
money week month year today tonight tomorrow yesterday morning evening night day days
weekend hour hours minute minutes moment moments time times while since until ago
again already yet soon later early late last next first second third once twice
head heart mind body face eyes hands hair skin voice blood
love hate like want need wish hope try tried trying help helping hurt hurting
feel sad happy angry scared afraid glad sorry tired sick better worse best worst
good bad great awful terrible nice fine okay ok right wrong true false real fake sure
new old young big small large long short high low hard easy strong weak heavy light
hot cold warm cool dark bright clean dirty full empty rich poor free busy quiet loud
fast slow close far near open closed deep simple important different same whole own
beautiful ugly pretty smart stupid funny weird strange normal special perfect terrible
able alone alive awake aware afraid ready safe sure worth
thank thanks please yes no yeah hey oh wow well okay hi hello goodbye
go going gone come coming get getting got make making take taking give giving
keep keeping let letting put putting run running walk walking talk talking speak
say saying tell telling ask asking answer answered call calling write writing read
reading listen listening hear hearing see seeing look looking watch watching find
finding lose losing win winning play playing start starting stop stopping end ending
leave leaving stay staying live living die dying eat eating drink drinking sleep
sleeping wake waking sit sitting stand standing move moving change changing turn
turning open opening close closing buy buying pay paying spend spending send sending
bring bringing carry carrying hold holding wait waiting meet meeting remember
remembering forget forgetting learn learning teach teaching understand understanding
believe believing think thinking know knowing mean meaning seem seems seemed become
becoming happen happening appear appearing continue continuing allow allowing lead
leading follow following create creating grow growing build building cry crying
laugh laughing smile smiling scream screaming shout shouting fight fighting worry
worrying miss missing care caring enjoy enjoying deal dealing handle handling
blog post write wrote posted reading writing blogging internet online phone text
message email computer facebook picture pictures photo photos video music song songs
movie movies book books game games show story stories news
food dinner lunch breakfast coffee tea water wine beer cake chocolate
car bus train plane road street city town country place room bed door window
table chair kitchen garden park beach church hospital store shop restaurant
dog cat pet animal tree flower sun rain snow wind weather summer winter spring fall
health doctor pain illness disease medicine therapy anxiety depression stress
relationship marriage wedding divorce date dating kiss hug sex party birthday holiday
christmas vacation trip travel journey plan plans goal goals dream dreams idea ideas
problem problems question questions reason reasons answer answers fact facts part parts
point points case cases end side kind group number area system program
word words name names line lines story level order form course
example experience situation chance choice decision mistake mistakes truth lie lies
power control energy effort attention interest peace war fear anger joy sadness love
surprise emotion emotions mood spirit soul faith god prayer
about above across after against along among around at before behind below beneath
beside between beyond by down during except for from in inside into near of off on
onto out outside over past through throughout to toward towards under underneath
until up upon with within without
and but or nor so yet because although though while whereas if unless whether
since as than when whenever where wherever after before once
i me my mine myself you your yours yourself he him his himself she her hers herself
it its itself we us our ours ourselves they them their theirs themselves
this that these those who whom whose which what whatever whoever
all any both each either every few many more most much neither none several some
such enough less least own other another
one two three four five six seven eight nine ten eleven twelve twenty thirty
hundred thousand million half
can could may might must shall should will would
am is are was were be been being have has had having do does did doing done
not no never nothing nowhere neither
here there everywhere somewhere anywhere
how why what when where who which
just only even also too either else instead almost already always enough
especially exactly finally generally hardly however indeed just likely mainly
mostly nearly obviously often perhaps possibly probably quickly rarely really
recently seriously simply slowly suddenly truly usually
away back down forward home inside outside together apart
accept accident account act action active add admit adult advice afford age agree air allow
amazing amount angel animal annoying anymore anyway apartment apologize appreciate approach
argue argument arm army art article attack attitude audience aunt average avoid award baby
background bag balance ball band bank bar base basic battle bear beat beauty bedroom behavior
belief belong benefit bill bird bit bitch bless blind block board boat bone border bored boring
bottle bottom box brain brave bread break breath breathe bridge bright broke broken budget bunch
burn business buy cake calm camera camp cancer capital card career careful case cash catch cause
celebrate center century chair challenge champion chapter character charge cheap check cheese
chest chicken choose church circle citizen claim clear climb clothes cloud club coach coat code
collect color comfort comfortable comment common community compare complain complete computer
concern condition confidence confident confused connection consider contact content conversation
cook copy corner cost couch count couple courage cousin cover crazy cream crime crowd cruel cup
cure curious current customer cute damn dance danger dead dear death debt decide deep defend
degree deserve design desk detail develop difference difficult dinner direction disappointed
discover discuss distance doctor dollar double draw dress drive drop drug dry duty ear earth
east edge education effect eight election embarrassed emergency employee encourage enemy engine
enjoy enter entire environment equal error escape event evidence exam excited exercise exist
expect expensive explain express extra eye fail failure fair fall familiar famous fan fat fault
favorite feed female field figure fill film final finger fire fish fit flight floor fly focus
folk foot force foreign forest forever forgive form former fortune forward frame freedom fresh
fruit fun future garden gas gather gift glass glory grade grandma grandpa grass grateful green
ground guess guilt gun habit hair hall hang happiness harm hat health heat heaven hell hero hide
hill history hit hobby hole honest honor horse host hotel huge human humble hungry hunt hurry
ice identity ignore image imagine impact improve incident income increase indeed inspire
instance intend interview island issue item jealous join joke journal judge jump justice key
kick kill kitchen knee knowledge lack lady land language laptop law lawyer lay lazy leader leg
lesson letter lie lift limit link lip list load loan local lock lonely loss lost loud lovely
lucky mad magic mail maintain major male manage manager market master match matter meal measure
memory mention mess middle military milk mine minor mirror mission mistake model modern moment
motion mountain mouth movement murder muscle nation nature neck neighbor nervous network nice
noise normal nose note notice novel nurse object obvious ocean offer officer oil option outcome
owner pack page paint pair panic paper parent patient pattern peace pen pencil period permit
personal physical piano pick piece pizza plan plant plate player pleasure pocket poem poet
police policy pool position positive pot pray prefer pregnant prepare present president press
pressure pretend price pride priest prison private prize process produce professor project
promise proof protect proud prove public pull punish purpose push quality queen quit race radio
rage rate reach react ready reality realize reality recognize record recover red reduce refuse
regret reject relax release religion remove rent repeat reply respect respond rest result return
review ride ring rise risk river rock role roof rule rush sad safe salt sand save scene schedule
science score screen sea search season seat secret secure seek sell sense series serve session
shake shame shape share sharp shoe shoot shot shoulder shower shut shy sight sign silence silly
sing single sir sit site size skill sky smell smoke snow social society soft soldier solution
solve sound soup south space speech speed spend spot spread square staff stage star state stay
steal step stick stomach stone storm strange stranger strength stress stretch strike struggle
study style subject success suffer suggest suit summer support suppose surface surgery survive
suspect sweet swim symptom talent task taste tax tear tears technology teeth temperature tend
tension term terrible test thank theory therapy thin throat throw ticket tie tight tiny tip
title toe tone tongue tool top topic total touch tough tour toy track trade tradition traffic
trail train trash treat trial trip trouble trust try tv type uncle union unit upset urge user
value various version victim view village violence visit voice vote wall war wash waste wave
weak wealth wear weird west wheel whisper wild will wind wine wing winner winter wise witness
wonder wonderful wood wool worker worry worth wound yard yell yellow youth zone
"""


# The templates of the main pipeline. A fixed list, not prompts/*.jinja: a template added for
# another model or an experiment must not change the tiny tokenizer, hence the demo's results.
TOKENIZER_TEMPLATES = ("baseline_assistant", "chat_template", "emotion_question", "stage1_assistant",
                       "stage1_user", "stage2_assistant")


def _template_text() -> list[str]:
    """The fixed wording of the main pipeline's templates, with the `{{ ... }}` slots removed."""
    return [_JINJA_TAG.sub(" ", (_PROMPTS_DIR / f"{name}.jinja").read_text(encoding="utf-8"))
            for name in TOKENIZER_TEMPLATES]


def tokenizer_corpus(labels: Sequence[str], answer_prefix: str = "Label:",
                     inputs: Sequence[str] = ("text",)) -> list[str]:
    """Texts to train the tiny tokenizer on; deterministic for given labels, answer prefix, input
    fields (a sentence-pair task adds its pairs) and prompts/."""
    cues = cue_words(labels)
    lines = [" ".join(_COMMON_WORDS.split())]
    lines += [" ".join(words) for words in cues.values()]
    # The prompts' wording and the labels come with every example: weigh them accordingly.
    lines += 200 * ([", ".join(labels)] + [f"{answer_prefix} {label}" for label in labels])
    lines += 200 * _template_text()
    train, _ = make_emotion_split(2000, 0, labels, seed=0)
    lines += [row["text"] for row in train]
    if len(inputs) == 2:
        pairs, _ = make_pair_split(2000, 0, labels, inputs, seed=0)
        lines += [f"{name}: {row[name]}" for row in pairs for name in inputs]
    for row in make_reasoning_set(1000, seed=0):
        lines += [row["question"], row["answer"], row["reasoning"]]
    return lines
