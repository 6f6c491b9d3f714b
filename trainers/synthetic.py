"""A small synthetic personalization task, for tests and benchmarks (no files, no model).

Every user has one secret word among a few options and prefers the answer that ends with it;
every pair contrasts the user's word with another option. The shots therefore reveal the user
(the preferred answers all end with the same word), and nothing else can: each word is as
common as the others, so without the shots the best accuracy is chance (50%). Held-out users
are new users (ids never trained on) with words from the same set.

:func:`secret_word_data` returns a :class:`fspo_bench.dataset.DomainData` with users carrying
descriptions and ``attributes={"word": ...}`` and preferences carrying ``chosen_attr`` /
``rejected_attr`` (so the RAT builder works on it too).
"""

from __future__ import annotations

from fspo_bench.dataset import DomainData, held_out_quarter, question_id
from fspo_bench.records import Preference, User
from fspo_bench.sampling import rng_for

WORDS = ("apple", "river", "stone", "cloud")


def secret_word_data(*, n_train_users: int = 16, n_eval_users: int = 8, n_questions: int = 24,
                     words: tuple[str, ...] = WORDS, shots: int = 3, seed: int = 0,
                     filler: int = 0) -> DomainData:
    """The secret-word task (see the module docstring).

    ``filler`` adds that many words of question-specific text before the answer's last word
    (longer completions, for benchmarks).
    """
    users = {}
    prefs = []
    questions = [f"Topic {j}: your pick?" for j in range(n_questions)]
    ids = [f"train-{i:03d}" for i in range(n_train_users)] + \
        [f"eval-{i:03d}" for i in range(n_eval_users)]
    for n, user_id in enumerate(ids):
        word = words[n % len(words)]
        users[user_id] = User(user_id, f"The user prefers answers ending with {word}.",
                              {"word": word})
        rng = rng_for("secret-word", seed, user_id)
        for j, question in enumerate(questions):
            other = rng.choice([w for w in words if w != word])
            text = " ".join(f"topic{j}" for _ in range(filler))
            lead = f"For topic {j} {text} I pick" if filler else "I pick"
            prefs.append(Preference(user_id, question, f"{lead} {word}.", f"{lead} {other}.",
                                    question_id(question),
                                    {"chosen_attr": word, "rejected_attr": other}))
    train = frozenset(ids[:n_train_users])
    return DomainData(
        domain="secret-word",
        source=f"synthetic:secret-word:{seed}",
        users=users,
        preferences=prefs,
        train_users=train,
        eval_users=frozenset(ids[n_train_users:]),
        eval_questions=held_out_quarter("secret-word", "question",
                                        (p.question_id for p in prefs)),
        default_shots=shots,
    )
