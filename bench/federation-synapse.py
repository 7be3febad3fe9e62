"""Federation figures with Synapse as the anchor, over TLS on loopback (run by
bench/federation-synapse.sh, which starts both servers):

* ingest: a Conifer user sends N messages back to back into a room a Synapse user shares;
  the time until Synapse's client sees the last gives Synapse's federation ingest rate. The
  same for N messages from Synapse into Conifer (there Synapse's own sending sets the pace).
* join: a Conifer room with M members; the time a Synapse user's join through Conifer takes.
"""

import os
import sys
import time
from urllib.parse import quote

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients", "federation"))
from matrix import User  # noqa: E402

CONIFER = os.environ["CONIFER_URL"]
CONIFER_NAME = os.environ["CONIFER_NAME"]
SYNAPSE = os.environ["SYNAPSE_URL"]
SYNAPSE_NAME = os.environ["SYNAPSE_NAME"]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
M = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
tag = str(int(time.time()))


def flow(sender: User, receiver: User, owner: User, owner_name: str, n: int) -> float:
    room = owner.create_room(preset="public_chat")
    other = receiver if owner is sender else sender
    other.join(room, [owner_name])
    receiver.sync(0)
    time.sleep(1)
    start = time.time()
    for i in range(n):
        sender.send(room, f"{tag} {i}")
    sent = time.time() - start
    receiver.wait_for_message(room, f"{tag} {n - 1}", timeout=600)
    took = time.time() - start
    print(f"  {n} messages sent in {sent:.2f} s, all seen by the other server's client after {took:.2f} s"
          f" -> {n / took:.0f} msg/s end to end")
    return n / took


carol = User.register(CONIFER, f"bcarol{tag}")
sam = User.register(SYNAPSE, f"bsam{tag}")
print(f"ingest: Conifer -> Synapse ({N} messages)")
to_synapse = flow(carol, sam, carol, CONIFER_NAME, N)
print(f"ingest: Synapse -> Conifer ({N} messages)")
to_conifer = flow(sam, carol, sam, SYNAPSE_NAME, N)

print(f"join: a Conifer room of {M} members")
room = carol.create_room(preset="public_chat")
for i in range(M - 1):
    u = User.register(CONIFER, f"bm{tag}x{i}")
    u.join(room)
joiner = User.register(SYNAPSE, f"bjoin{tag}")
start = time.time()
joiner.join(room, [CONIFER_NAME])
synapse_join = time.time() - start
members = len(joiner.req("GET", f"/_matrix/client/v3/rooms/{quote(room)}/joined_members")["joined"])
print(f"  Synapse joined in {synapse_join * 1000:.0f} ms and lists {members} members")
print(f"summary: Synapse ingests {to_synapse:.0f} msg/s from Conifer; Conifer ingests {to_conifer:.0f} msg/s"
      f" from Synapse (paced by Synapse's sending); Synapse's join of the {M}-member room took"
      f" {synapse_join * 1000:.0f} ms")
