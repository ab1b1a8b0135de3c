"""Claims: limitations of prompt tuning (Wang et al. 2023 §5–7; wang2023.md §2.2–2.4, §3.3–3.5, §4, §5 items 2, 12–20).

One module per theorem: witness (Thm 2), multi_head (its h = 1 hypothesis), memorizer (each example alone; the
prompt mass bound), rank (Thms 3-4: rank obstruction, rank-1 LoRA), invertibility (Thm 5: i-ResNet MLP, causal
stacks), experiment (the §7 study). Lower-bound claims report observed = the theorem's certificate and bound =
the smallest error any tried prompt reached, so ratio = certificate / best error <= 1 and a ratio near 1 means the
adversary (constructions.prompt_adversary) came close to the floor.

Instances hold their arrays (weights, tokens, prompts), drawn at generation time, so a counterexample file
replays without the generator that produced it.
"""
