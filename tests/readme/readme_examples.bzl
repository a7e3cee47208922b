"""readme_examples: the C++ blocks of a README as C++ sources, made at build
time by scripts/readme_examples.py (see there for the harness that completes
fragments and the markers that opt blocks out).

Outputs:
  default:         <name>_all.cc, every block in one program (namespace
                   readme_NN each, a main that runs them in README order)
  output group "standalone": <name>_standalone/, a directory (tree artifact)
                   of readme_NN.cc, each block as a program of its own

How many blocks there are is known only when the script has run, so the
per-block programs are one directory output rather than a list of files, and
the combined program is one file: no count to keep in step with the README.
"""

def _readme_examples_impl(ctx):
    standalone = ctx.actions.declare_directory(ctx.label.name + "_standalone")
    combined = ctx.actions.declare_file(ctx.label.name + "_all.cc")
    args = ctx.actions.args()
    args.add(ctx.file.script)
    args.add(ctx.file.readme)
    args.add(standalone.path)
    args.add("--combined", combined)
    args.add("--quiet")
    ctx.actions.run(
        executable = "python3",
        arguments = [args],
        inputs = [ctx.file.script, ctx.file.readme],
        outputs = [standalone, combined],
        use_default_shell_env = True,  # python3 from PATH
        mnemonic = "ReadmeExamples",
        progress_message = "Extracting the C++ blocks of %s" % ctx.file.readme.short_path,
    )
    return [
        DefaultInfo(files = depset([combined])),
        OutputGroupInfo(standalone = depset([standalone])),
    ]

readme_examples = rule(
    implementation = _readme_examples_impl,
    attrs = {
        "readme": attr.label(allow_single_file = [".md"], mandatory = True),
        "script": attr.label(allow_single_file = [".py"], mandatory = True),
    },
)
