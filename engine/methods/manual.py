"""``manual``: score instructions the user wrote, one evaluation each. The reference a person would write."""

from __future__ import annotations

from engine.methods.base import Context, Method, Proposal


class Manual(Method):
    name = "manual"
    help = "score instructions you write yourself (one a line)"
    takes_instructions = True

    async def propose(self, ctx: Context, iteration: int, n: int) -> Proposal:
        return Proposal(list(ctx.instructions[ctx.position : ctx.position + n]))
