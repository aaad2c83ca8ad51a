# The kube-aws container image: the released static (musl) binary, with git (plan and apply
# record the cluster repository's commit in the audit log) and the CA certificates AWS's
# endpoints are checked against. The release workflow (.github/workflows/publish-image.yml)
# builds it from the release's own Linux archives, after checking their SHA-256, laid out as
# dist/linux/amd64/kube-aws and dist/linux/arm64/kube-aws. Run it in the cluster repository:
#   docker run --rm -v "$PWD:/cluster" -w /cluster -e AWS_REGION ghcr.io/kube-aws/kube-aws:0.1.0 plan
FROM alpine:3.22
RUN apk add --no-cache ca-certificates git \
 && git config --system --add safe.directory /cluster
ARG TARGETPLATFORM
COPY dist/${TARGETPLATFORM}/kube-aws /usr/local/bin/kube-aws
# Not root: nothing kube-aws does needs it, and files it writes in a mounted repository are
# owned by the uid given with `docker run --user`.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kube-aws"]
CMD ["--help"]
