"""The black-box side of InstructZero: an OpenAI-compatible client (cache, limits, retries), the scoring of an
instruction on a task, and the embedded llama.cpp server used when no endpoint is configured.

Light on purpose (httpx, tenacity, the standard library): the TUI may import it, and it never loads torch.
"""

from engine.blackbox.client import BlackBox, Completion
from engine.blackbox.limits import RateLimiter
from engine.blackbox.scoring import Race, ScoreResult, score_instruction
from engine.models.embedded import EmbeddedServer

__all__ = ["BlackBox", "Completion", "EmbeddedServer", "Race", "RateLimiter", "ScoreResult", "score_instruction"]
