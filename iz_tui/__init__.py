"""The `iz` front ends: the Textual TUI and the headless CLI.

Both only talk to the engine (a subprocess, through :mod:`engine.wire.client`) and read the history store. This
package must never import torch, transformers, botorch or gpytorch: `iz` has to open in well under a second.
"""
