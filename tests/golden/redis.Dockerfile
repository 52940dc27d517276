FROM alpine:3.20

# add our user and group first to make sure their IDs get assigned consistently
RUN set -eux; \
	addgroup -S -g 1000 redis; \
	adduser -S -G redis -u 999 redis
# runtime dependencies
RUN set -eux; \
	apk add --no-cache \
# add tzdata for timezone support
		tzdata \
		'su-exec>=0.2' \
	;

ENV REDIS_VERSION 7.4.0
ENV REDIS_DOWNLOAD_URL http://download.redis.io/releases/redis-7.4.0.tar.gz
ENV REDIS_DOWNLOAD_SHA 57b47c2c6682636d697dbf5d66d8d495b4e653afc9cd32b7adf9da3e433b8aaf

RUN set -eux; \
	\
	apk add --no-cache --virtual .build-deps \
		coreutils \
		gcc \
		make \
	; \
	wget -O redis.tar.gz "$REDIS_DOWNLOAD_URL"; \
	echo "$REDIS_DOWNLOAD_SHA *redis.tar.gz" | sha256sum -c -; \
	mkdir -p /usr/src/redis; \
	tar -xzf redis.tar.gz -C /usr/src/redis --strip-components=1; \
	rm redis.tar.gz; \
	grep -E '^ *createBoolConfig[(]"protected-mode",' /usr/src/redis/src/config.c; \
	sed -ri 's!^( *createBoolConfig[(]"protected-mode",.*, *)1( *,.*[)],)$!\10\2!' /usr/src/redis/src/config.c; \
	make -C /usr/src/redis -j "$(nproc)" all; \
	redis-cli --version; \
	redis-server --version

RUN mkdir /data && chown redis:redis /data
VOLUME /data
WORKDIR /data

COPY docker-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]

EXPOSE 6379
CMD ["redis-server"]
