"""The local generator's backends (siblings over one base): :mod:`.transformers` for Hugging Face models and
:mod:`.llama_cpp` for GGUF files; :class:`.base.InstructionWriter` is what the engine holds either as. Importing this
package imports neither backend (they import torch; the TUI must never)."""
