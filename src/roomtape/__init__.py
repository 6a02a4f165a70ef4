"""roomtape: self-hosted recording for real-time rooms."""

__version__ = "0.1.0"
