# syntax=docker/dockerfile:1
FROM alpine
RUN <<EOF
echo "hello from a heredoc"
echo "second line"
EOF
RUN <<-EOT
	echo "tabs are stripped"
	EOT
RUN <<"QUOTED" sh
echo "$HOME is not expanded by the frontend"
QUOTED
RUN cat <<A > /a.txt && cat <<B > /b.txt
first file
A
second file
B
RUN 3<<FD3 cat /proc/self/fd/3
via fd 3
FD3
COPY <<conf.ini <<'script.sh' /etc/app/
[main]
name = ${NAME}
conf.ini
#!/bin/sh
echo $1
script.sh
ADD <<-EOF /greeting
	hi there
EOF
ONBUILD RUN <<EOF
echo onbuild heredoc
EOF
RUN ["echo", "<<NOTAHEREDOC"]
RUN python3 <<PY
print("done")
PY
