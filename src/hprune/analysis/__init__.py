"""Analysis: what each unit of a model weighs (the unit table) and contributes
(the contribution analysis and its fast proxy)."""
