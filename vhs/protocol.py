"""The request/response contract of the `vhs` Triton model, shared by the orchestrator and the client.

Every tensor name that crosses the server boundary is defined here once, so that the orchestrator
(`model_repository/vhs/1/model.py`), its config writer (`export/`) and the client (`client/`) can
never disagree on a spelling.
"""

ORCHESTRATOR_MODEL = "vhs"

# Inputs of the `vhs` model (max_batch_size 0: one request = one prompt).
PROMPT = "PROMPT"  # BYTES [1], UTF-8 text, required
NUM_CANDIDATES = "NUM_CANDIDATES"  # INT32 [1], optional, default from the preset
SEED = "SEED"  # INT64 [1], optional, default 0
MODE = "MODE"  # BYTES [1], optional, a mode of the table in vhs/modes.py, default "vhs"
# FP32 [1], optional: a time budget in milliseconds; N becomes the largest N, up to NUM_CANDIDATES (or
# the preset's max_candidates without it), whose predicted time in the orchestrator fits it.
BUDGET_MS = "BUDGET_MS"

# Outputs of the `vhs` model.
IMAGE = "IMAGE"  # UINT8 [H, W, 3], the selected candidate
SCORES = "SCORES"  # FP32 [N], P(yes) of every candidate ([0] in a mode without a verifier: "none")
SELECTED = "SELECTED"  # INT32 [1], index of the selected candidate
TIMINGS = "TIMINGS"  # BYTES [1], JSON object {stage: milliseconds}
CANDIDATE_IMAGES = "CANDIDATE_IMAGES"  # UINT8 [N, H, W, 3] if requested, else [0, H, W, 3]
NUM_CANDIDATES_USED = "NUM_CANDIDATES_USED"  # INT32 [1], the N this request was served with
# FP32 [1], with BUDGET_MS the predicted time (ms) at NUM_CANDIDATES_USED, above BUDGET_MS when not even
# N = 1 was predicted to fit (served with N = 1 anyway); NaN without BUDGET_MS.
PREDICTED_MS = "PREDICTED_MS"
# FP32 [1], the request's measured time in the orchestrator (ms), from taking the request to its last
# stage: what BUDGET_MS bounds (Triton's hop into the Python model, its queue and the network come on
# top); NaN for a request with return_candidates (untimed).
REQUEST_MS = "REQUEST_MS"

# Request parameter (Triton request `parameters`) that asks for CANDIDATE_IMAGES. It forces every
# candidate to be decoded, so it is a debugging aid, never part of a timed run.
RETURN_CANDIDATES = "return_candidates"

DEFAULT_SEED = 0
