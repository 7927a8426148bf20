"""Reward models and their files: loading (`reward`), the embedded defaults (`embedded`) and
the packages their files come from (`packages`), conversion for vLLM (`convert`) and chat
templates (`templates`). Used by the RM server, the trainer and the synthesis service alike;
imports nothing above the shared base."""
