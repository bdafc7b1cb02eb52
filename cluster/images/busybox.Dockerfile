# busybox at the tag the kit's manifests use (cluster/manifests), from Debian bookworm's
# busybox-static: one static binary and its applet links in an otherwise empty image, like
# the upstream image. Note: the binary is Debian's busybox version, not the tag's (the pods
# only run `sh`, `sleep`, `echo`, `nc`-free shell loops).
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS debian
RUN apt-get update \
    && apt-get install -y --no-install-recommends busybox-static \
    && mkdir -p /rootfs/bin /rootfs/tmp /rootfs/etc \
    && cp /bin/busybox /rootfs/bin/busybox \
    && chroot /rootfs /bin/busybox --install -s /bin \
    && chmod 1777 /rootfs/tmp \
    && printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > /rootfs/etc/passwd \
    && printf 'root:x:0:\nnobody:x:65534:\n' > /rootfs/etc/group

FROM scratch
COPY --from=debian /rootfs/ /
CMD ["sh"]
