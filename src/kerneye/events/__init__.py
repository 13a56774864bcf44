"""Events as users see them: Tetragon's JSON shape, built from cached parts."""
