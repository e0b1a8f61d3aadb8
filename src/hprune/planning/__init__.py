"""Planning: rank units and turn a ranking into a plan (plan.json, units in original
block indices); choose HPP's r_thres on the validation split."""
