# The training image: LLaMA-Factory 0.9.5 with ftops on top. Every training pod runs
# `ftops node-run` from it; the JobSet gives the command, so the image has no entrypoint.
#
#   docker build -t llamafactory-ftops .              # on LLaMA-Factory's CUDA image
#   docker build --build-arg BASE_IMAGE=<image> .     # on another base
#
# BASE_IMAGE must have `python` (3.11+) on PATH with LLaMA-Factory 0.9.5 and its training
# stack (torch, transformers, peft, ...) installed, and `git` (the post-run hook publishes
# the run's record with it). The default is LLaMA-Factory's own CUDA image, named by tag:
# its digest could not be read from the machine this was written on (no access to Docker
# Hub), and a digest nobody has checked is worse than none. The image workflow
# (.github/workflows/image.yml) resolves the tag to its digest once per build, builds on
# that digest and names it in the image's labels and in its pull request; pin it here
# (`docker buildx imagetools inspect docker.io/hiyouga/llamafactory:0.9.5` prints it;
# write `...:0.9.5@sha256:<digest>`) and the workflow uses it as is. The workflow pushes
# the image and proposes the pushed digest for k8s-base/cluster-profile.yaml.
# The tests build it without Docker, with buildah, on a CPU stand-in for that base made
# from Debian packages and PyPI (tests/devcluster/cpu-base.Containerfile).
ARG BASE_IMAGE=docker.io/hiyouga/llamafactory:0.9.5
FROM ${BASE_IMAGE}

USER root

# ftops's own dependencies first (their own layer: editing render/ does not reinstall
# them), at the versions of scripts/constraints.txt. The training stack is the base's and
# is not touched: ftops's runtime dependencies do not include it, and `pip check` fails
# the build if anything installed here breaks what the base has.
COPY pyproject.toml scripts/constraints.txt /opt/ftops/
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("/opt/ftops/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /opt/ftops/requirements.txt \
    && python -m pip install --no-cache-dir --disable-pip-version-check \
        -c /opt/ftops/constraints.txt -r /opt/ftops/requirements.txt

COPY README.md /opt/ftops/src/
COPY render /opt/ftops/src/render
RUN cp /opt/ftops/pyproject.toml /opt/ftops/src/ \
    && python -m pip install --no-cache-dir --disable-pip-version-check --no-deps \
        -c /opt/ftops/constraints.txt /opt/ftops/src \
    && rm -rf /opt/ftops/src \
    && python -m pip check \
    && ftops --help > /dev/null \
    && git --version \
    && python -c "import llamafactory, render.launch.noderun"

# Pods run as user 1000 (k8s-base/components/jobset-common); its HOME, the Hugging Face
# cache and the other caches live in a folder it owns. Create the user unless the base
# already has uid 1000.
ENV HOME=/home/ftops \
    HF_HOME=/home/ftops/.cache/huggingface \
    XDG_CACHE_HOME=/home/ftops/.cache \
    MPLCONFIGDIR=/home/ftops/.cache/matplotlib \
    PYTHONUNBUFFERED=1
RUN (getent passwd 1000 > /dev/null || useradd --uid 1000 --user-group --no-create-home \
        --home-dir /home/ftops --shell /bin/bash ftops) \
    && mkdir -p /home/ftops/.cache/huggingface /home/ftops/.cache/matplotlib \
    && chown -R 1000:1000 /home/ftops \
    && chmod 0755 /home/ftops

USER 1000
WORKDIR /home/ftops
ENTRYPOINT []
CMD ["ftops", "--help"]
