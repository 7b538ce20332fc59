"""Launch: put a rendered run to work.

On a cluster (`cluster`: server-side apply, status, cancel), on this machine (`local`),
and inside each training pod (`noderun`); `trainer` runs `llamafactory-cli train`, and
`demo` makes the tiny demo model. Every run ends in the post-run hook (`render.record`).
"""
