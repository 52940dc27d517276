# escape=`
# A Windows-style file: the backtick continues lines, backslashes are plain path separators.

FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop';"]
ENV APP_HOME C:\app
WORKDIR C:\app
RUN New-Item -ItemType Directory -Path C:\data ; `
    Write-Host "created" ; `
    Get-ChildItem C:\
COPY ["app files\\", "C:\\app\\"]
LABEL description="A path C:\tmp\ with `"quotes`""
CMD ["cmd", "/S", "/C", "echo C:\\app"]
