"""The spraying hot paths compute keys and next hops with the hashes inlined (the ideal NIC's
sprayed key, the switch's per-packet salted hash): they must give exactly the reference values
of :mod:`pktsim.fabric.hashing` (flow_key, salted_hash) for the random draws the NIC makes."""

from __future__ import annotations

import random
from collections import deque
from itertools import count

import simpy

from pktsim.fabric.hashing import entropy_mix, entropy_mixes, flow_key, flow_key_parts, salted_hash, sprayed_key
from pktsim.fabric.selectors import HashSelect, RandomSelect
from pktsim.packet.nic import Flow, Nic
from pktsim.packet.packet import Packet
from pktsim.packet.switch import Switch


def test_the_entropy_table_holds_every_entropys_mix() -> None:
    table = entropy_mixes()
    assert len(table) == 1 << 16
    assert all(table[e] == entropy_mix(e) for e in range(1 << 16))


def test_sprayed_keys_are_flow_keys_for_large_host_indices() -> None:
    # flow_key_parts cuts the connection's mix to 32 bits: exact even when src * 0x01000193
    # needs more than 32 bits.
    rng = random.Random(3)
    for _ in range(5_000):
        src, dst, entropy = rng.randrange(1 << 24), rng.randrange(1 << 24), rng.randrange(1 << 16)
        assert sprayed_key(flow_key_parts(src, dst), entropy_mix(entropy)) == flow_key(src, dst, entropy)


class _Port:
    """A stand-in egress port: records what it is sent."""

    def __init__(self, name: int) -> None:
        self.name = name
        self.down = False
        self.busy_until = 0
        self.sent: list[Packet] = []

    def send(self, pkt: Packet, t: int) -> None:
        self.sent.append(pkt)


class _Link:
    """A stand-in upstream port holding one packet that has arrived."""

    def __init__(self, pkt: Packet) -> None:
        self.fifo = deque([pkt])
        self.heap: list = []
        self.eid = count()
        self.arrival_callbacks = ()


def _forward(switch: Switch, key: int) -> int:
    pkt = Packet(None, 0, 100, 50, 0, key, None)
    pkt.t = 0
    switch.on_arrival(_Link(pkt))
    return next(p.name for p in switch.fib[0] if p.sent and p.sent[-1] is pkt)


def test_the_switch_inlines_hash_select_with_its_salt() -> None:
    rng = random.Random(5)
    for n in range(2, 9):
        salt = rng.getrandbits(32)
        select = HashSelect(salt)
        group = tuple(_Port(i) for i in range(n))
        switch = Switch(simpy.Environment(), 0, "leaf", rng.getrandbits(32), select)  # its own salt differs
        switch.fib = [group]
        assert switch.hash_salt == salt
        for _ in range(300):
            key = flow_key(rng.randrange(1024), 0, rng.randrange(1 << 16))
            assert _forward(switch, key) == salted_hash(key, salt) % n == select(Packet(None, 0, 0, 0, 0, key, None),
                                                                                  range(n))


def test_other_selectors_are_called() -> None:
    switch = Switch(simpy.Environment(), 0, "leaf", 1, RandomSelect(9))
    switch.fib = [tuple(_Port(i) for i in range(4))]
    assert switch.hash_salt is None
    reference = RandomSelect(9)
    assert [_forward(switch, 7) for _ in range(50)] == [reference(None, range(4)) for _ in range(50)]


def _sprayed_keys(seed: int, packets: int) -> list[int]:
    """Keys of the packets the ideal NIC (host 3) sends to host 9 when spraying."""
    env = simpy.Environment()
    port = _Port(0)
    nic = Nic(env, 3, "h3", port, 4096, 64, True, seed, lambda flow, t: None)
    qp = nic.open_queue_pair(("c",), 9, 5)
    nic.post(qp, Flow(0, 0, 0, 3, 9, packets * 4032, packets, 5))
    env.run()
    return [p.key for p in port.sent]


def test_the_ideal_nic_sprays_flow_keys_of_its_seeded_entropies() -> None:
    draw = random.Random(11).getrandbits
    assert _sprayed_keys(11, 500) == [flow_key(3, 9, draw(16)) for _ in range(500)]


def test_packet_key_draws_the_same_keys_as_the_inlined_path() -> None:
    nic = Nic(simpy.Environment(), 3, "h3", _Port(0), 4096, 64, True, 11, lambda flow, t: None)
    qp = nic.open_queue_pair(("c",), 9, 5)
    assert [nic.packet_key(qp) for _ in range(500)] == _sprayed_keys(11, 500)
