"""The LiveKit-compatible half of the emulator: signalling, rooms and media on aiortc.

server.py     VoiceServer: the ASGI app (routes, token checks, rooms)
session.py    one participant's WebSocket and peer connections (v0 and v1 signalling)
room.py       one call: the caller, the demo agent, timers, ending
protocol.py   LiveKit protobuf messages in and out
media.py      the agent's audio track, the caller's audio levels, shipped sounds
speech.py     utterance detection by energy
sdp.py        msid labels and trickled candidates
loopback.py   keeping ICE on the configured (loopback) addresses
"""
