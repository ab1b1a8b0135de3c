"""Claims about polynomial-method attention (Alman & Song 2023) and its prompt-tuning form (Hu et al. 2024).

polynomial.py  as23.exp_polynomial            |P(x)/e^x - 1| <= rho(g, beta) on [-beta, beta]          (§4.2)
low_rank.py    as23.low_rank_exact            phi(Q)^T psi(K) = P(scale Q K^T); r = C(d+g,g)            (§4.3)
               as23.kernel_relative_error     |Ã/A - 1| <= rho + rounding floor, entrywise              (§4.5 A(i))
output.py      as23.output_error              ||out - Att||_max <= 2 rho/(1-rho) ||V||_max              (§4.5 A(ii))
               as23.zero_query_mean           Q = 0 => out = mean(V) exactly, any degree                (§4.3)
               as23.permutation_equivariance  out(ΠQ, ΣK, ΣV) = Π out(Q, K, V)                          (§4.3)
parity.py      as23.backend_parity            err(backend) <= 2 err(naive, same dtype) + floor          (§4.5 B)
cost.py        as23.flop_model                counted operations = the closed-form FLOP model            (§5)
               as23.lowrank_memory            traced peak memory <= O(n d_v + chunk r) model             (§5)
prompt.py      hu24.apti_prompt_attention     APTI on [P, X] within the certificate; B = max(B_P, B_X)
scaling.py     hu24.almost_linear             B fixed, eps = n^-c: error within 2eps/(1-eps)||V||; r = n^o(1) trend
               hu24.phase_transition          B = C sqrt(ln n), d = log2 n: log r / log n does not decay
bench.py       study "attention"              exact vs polynomial attention, ratios measured in one run (§4.6)
"""
