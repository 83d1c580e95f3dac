"""Hostile test plugin: on_msg never returns. The host's deadline must
interrupt it and fail the hook, leaving the node serving."""


def on_msg(ctx, ev):
    n = 0
    while True:
        n += 1
