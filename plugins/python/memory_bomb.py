"""Hostile test plugin: on_msg allocates 1 MiB buffers, touching every page
and keeping them all, until memory runs out. The host's memory cap must stop it."""

hoard = []


def on_msg(ctx, ev):
    while True:
        hoard.append(bytearray(b"\x01" * (1 << 20)))
