"""bAbI qa1–qa5 regenerated in Python, scattered BABILong-style through a long haystack.

The bAbI world: four actors, six rooms, three objects. A story is a list of facts in order; each
task asks one question whose answer is a single word and names the facts that support it.
"""

import random
from dataclasses import dataclass, field

from hsa_core.tasks.base import Sample, TaskEnv, TaskError

ACTORS = ("John", "Mary", "Sandra", "Daniel")
GIVERS = ("Bill", "Fred", "Jeff", "Mary")
ROOMS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS = ("apple", "football", "milk")
MOVE = ("went to", "journeyed to", "travelled to", "moved to")
GRAB = ("grabbed", "took", "got", "picked up")
DROP = ("dropped", "put down", "discarded", "left")
GIVE = ("gave", "handed", "passed")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}


@dataclass
class Story:
    facts: list[str] = field(default_factory=list)
    question: str = ""
    answer: str = ""
    support: list[int] = field(default_factory=list)

    def add(self, text: str) -> int:
        self.facts.append(text)
        return len(self.facts) - 1


def _qa1(rng: random.Random) -> Story:
    story, last = Story(), {}
    for _ in range(rng.randint(4, 10)):
        actor, room = rng.choice(ACTORS), rng.choice(ROOMS)
        last[actor] = (story.add(f"{actor} {rng.choice(MOVE)} the {room}."), room)
    actor = rng.choice(sorted(last))
    story.question = rng.choice(("Where is {a}?", "Where is {a} now?", "In which room is {a}?")).format(
        a=actor
    )
    story.support, story.answer = [last[actor][0]], last[actor][1]
    return story


def _simulate(rng: random.Random, steps: int) -> tuple[Story, dict[str, list[tuple[str, list[int]]]]]:
    """Actors move, grab and drop objects. Returns the story and, per object, its location history:
    (room, the facts that put it there)."""
    story = Story()
    where: dict[str, tuple[str, int]] = {}  # actor → (room, fact of the last move)
    holder: dict[str, str] = {}  # object → actor carrying it
    grabbed: dict[str, int] = {}  # object → fact of its grab
    history: dict[str, list[tuple[str, list[int]]]] = {o: [] for o in OBJECTS}
    for _ in range(steps):
        actor = rng.choice(ACTORS)
        carried = [o for o, a in holder.items() if a == actor]
        free = [o for o in OBJECTS if o not in holder]
        action = rng.choice(["move", "move", "grab", "drop"] if actor in where else ["move"])
        if action == "grab" and free:
            obj = rng.choice(free)
            holder[obj], grabbed[obj] = actor, story.add(f"{actor} {rng.choice(GRAB)} the {obj}.")
            room, move = where[actor]
            if not history[obj] or history[obj][-1][0] != room:
                history[obj].append((room, [move, grabbed[obj]]))
        elif action == "drop" and carried:
            obj = rng.choice(carried)
            del holder[obj]
            story.add(f"{actor} {rng.choice(DROP)} the {obj}.")
        else:
            room = rng.choice([r for r in ROOMS if r != where.get(actor, ("",))[0]])
            move = story.add(f"{actor} {rng.choice(MOVE)} the {room}.")
            where[actor] = (room, move)
            for obj in carried:
                history[obj].append((room, [grabbed[obj], move]))
    return story, history


def _qa2(rng: random.Random) -> Story:
    while True:
        story, history = _simulate(rng, rng.randint(8, 16))
        known = [o for o in OBJECTS if history[o]]
        if known:
            obj = rng.choice(known)
            room, support = history[obj][-1]
            story.question = rng.choice(("Where is the {o}?", "Where is the {o} now?")).format(o=obj)
            story.answer, story.support = room, sorted(set(support))
            return story


def _qa3(rng: random.Random) -> Story:
    while True:
        story, history = _simulate(rng, rng.randint(10, 20))
        known = [o for o in OBJECTS if len(history[o]) >= 2]
        if known:
            obj = rng.choice(known)
            (before, s1), (last, s2) = history[obj][-2:]
            story.question = rng.choice(
                ("Where was the {o} before the {r}?", "Where was the {o} before it was in the {r}?")
            ).format(o=obj, r=last)
            story.answer, story.support = before, sorted(set(s1 + s2))
            return story


def _qa4(rng: random.Random) -> Story:
    story = Story()
    a, b, c = rng.sample(ROOMS, 3)
    d1 = rng.choice(sorted(OPPOSITE))
    d2 = rng.choice([d for d in OPPOSITE if d not in (d1, OPPOSITE[d1])])
    facts = [story.add(f"The {a} is {d1} of the {b}."), story.add(f"The {c} is {d2} of the {b}.")]
    if rng.random() < 0.5:
        story.question, story.answer = f"What is {d1} of the {b}?", a
    else:
        story.question, story.answer = f"What is the {b} {OPPOSITE[d1]} of?", a
    story.support = [facts[0]]
    return story


def _qa5(rng: random.Random) -> Story:
    while True:
        story, gives = Story(), []
        for _ in range(rng.randint(5, 10)):
            if rng.random() < 0.35:
                story.add(f"{rng.choice(GIVERS)} {rng.choice(MOVE)} the {rng.choice(ROOMS)}.")
            else:
                g, r = rng.sample(GIVERS, 2)
                obj = rng.choice(OBJECTS)
                gives.append((g, obj, r, story.add(f"{g} {rng.choice(GIVE)} the {obj} to {r}.")))
        if not gives:
            continue
        g, obj, r, _ = rng.choice(gives)
        # (question, the gives it is about, which field answers it); asked only when the answer is unique
        forms = [
            (f"Who gave the {obj} to {r}?", [x for x in gives if x[1] == obj and x[2] == r], 0),
            (f"Who received the {obj}?", [x for x in gives if x[1] == obj], 2),
            (f"What did {g} give to {r}?", [x for x in gives if x[0] == g and x[2] == r], 1),
            (f"Who did {g} give the {obj} to?", [x for x in gives if x[0] == g and x[1] == obj], 2),
        ]
        forms = [f for f in forms if len({x[f[2]] for x in f[1]}) == 1]
        if forms:
            story.question, matches, field_ = rng.choice(forms)
            story.answer, story.support = matches[0][field_], [x[3] for x in matches]
            return story


STORIES = {1: _qa1, 2: _qa2, 3: _qa3, 4: _qa4, 5: _qa5}


def babi(env: TaskEnv, rng: random.Random, length: int, qa: int = 1, haystack: str = "varied") -> Sample:
    """All of a story's facts, in order, at random depths of the haystack; the supporting facts are the
    evidence. The stories vary their own wording (several verbs and question forms)."""
    if qa not in STORIES:
        raise TaskError(f"bAbI task must be one of {sorted(STORIES)}, got {qa}")
    story = STORIES[qa](rng)
    return env.single_document(
        f"babi_qa{qa}",
        haystack,
        length,
        story.facts,
        story.support,
        story.question,
        story.answer,
        [story.answer],
        rng,
    )
