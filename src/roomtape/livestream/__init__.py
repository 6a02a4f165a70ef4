"""Live streaming of a meeting: its live render pushed as HLS (served by roomtape) and to an RTMP receiver.

`roomtape.livestream.engine` starts and stops a meeting's stream on the node that holds its room;
`roomtape.livestream.outputs` muxes the live render's encoded packets into HLS and RTMP.
"""
