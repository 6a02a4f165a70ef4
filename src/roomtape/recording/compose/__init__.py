"""Parts of the meeting composite (`roomtape.recording.composer`): timeline, sources, layout, canvas, output."""
