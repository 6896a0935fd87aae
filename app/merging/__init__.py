"""Account merging: fold an absorbed account into a survivor (same natural person), as a
resumable state machine under a merge lock, then tell every client that knew the absorbed one."""
