"""The page of a run or an evaluation folder: one self-contained ``index.html`` to look at every answer, verdict,
check and curve beside the report's numbers (``render``), from what ``collect`` reads of the stored files;
``folders`` finds what a folder holds for ``sami view``."""
