
standalone-1É
web127.0.0.1:10000 :
J
/dev/stdoutR™
color*8
canary-header
/"
x-canaryalways"

color-v2%
api
/api/"

color-v1"
/,
split
/"

color-v1Z

color-v2
!
color-v1

127.0.0.1:18081(#
color-v2

127.0.0.1:18082 (