"""A small, general-purpose sentiment lexicon for English reviews (used by the proxy judge).

Written by hand for this project from common review vocabulary (praise and criticism of films,
books and shows), not derived from the shipped data. Each entry is a whole lower-case word
(hyphenated compounds are one word). One point per occurrence; a negator (or a word ending in
"n't") up to three words earlier in the same clause flips the sign ("not bad" counts +1).
"""

from __future__ import annotations

POSITIVE = frozenset("""
good great excellent superb brilliant brilliantly wonderful wonderfully amazing amazingly
fantastic outstanding masterful masterfully masterpiece masterpieces beautiful beautifully
gorgeous stunning stunningly delightful delight delights charming charm moving touching
powerful compelling gripping engaging engrossing captivating captivates thrilling exciting
fun funny hilarious witty wit clever cleverly smart intelligent thoughtful insightful rich vivid
vividly memorable unforgettable remarkable remarkably impressive impressively terrific perfect
perfectly love loved loves lovely enjoy enjoyed enjoyable enjoying recommend recommended
best finest favorite favourite classic timeless fresh original inventive creative ambitious
heartfelt heartwarming warm tender poignant satisfying rewarding triumph triumphant success
successful strong solid elegant elegantly graceful gracefully sharp nuanced layered
entertaining addictive riveting spellbinding breathtaking dazzling magnificent marvelous
marvellous sublime exquisite flawless flawlessly genius iconic landmark essential worthwhile
deserves deserved admire admirable praise beloved pleasure joy joyful uplifting inspiring
inspired authentic genuine convincing believable effective excels excel shines shine shining
soars delivers nails stellar phenomenal extraordinary exceptional exceptionally incredible
incredibly awesome refreshing crisp skillful skillfully skilful deft deftly superbly
wonder well-crafted well-written well-made well-acted top-notch must-see must-read must-watch
gem treasure treat irresistible absorbing affecting accomplished assured confident
hypnotic immersive luminous radiant resonant profound richly glorious splendid fine
""".split())

NEGATIVE = frozenset("""
bad badly poor poorly weak weakest awful terrible terribly horrible dreadful boring bored bores
dull tedious tiresome sluggish plodding bloated overlong long-winded overrated overblown
pretentious shallow flat lifeless bland forgettable mediocre disappointing disappointed
disappointment mess messy muddled confusing incoherent clumsy clumsily awkward awkwardly
clunky cliched clichéd cliche cliché cliches clichés predictable formulaic derivative generic
stale lazy cheap hollow contrived implausible unconvincing stilted wooden cringe cringeworthy
annoying irritating frustrating grating unbearable insufferable painful painfully waste wasted
wastes worst fails fail failed failure failures flawed flaw flaws lacks lacking lackluster
lacklustre misfire misfires struggles drags overstays sloppy uneven repetitive monotonous
exhausting unpleasant ugly hate hated dislike disliked regret unfortunately sadly letdown
underwhelming underwhelms uninspired unoriginal pointless meaningless dumb stupid silly
ridiculous absurd preachy heavy-handed manipulative sappy melodramatic overwrought overdone
excessive padded padding filler joyless humorless humourless soulless tepid lukewarm forced
dated outdated mind-numbing trite hackneyed banal nonsensical convoluted overstuffed aimless
aimlessly tiring tired tiresome dragging dragged drag slog chore dud flop botched mediocrity
bland blandly grim-faced irritatingly insipid vapid limp listless pedestrian shoddy mangled
disjointed incoherently thin thinly worse
""".split())

NEGATORS = frozenset("""
not no never nothing neither nor without hardly barely scarcely cannot
""".split())

#: Words that end a negation's reach (besides punctuation).
CLAUSE_BREAKS = frozenset("but yet although though however while whereas".split())
