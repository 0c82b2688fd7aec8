
seed-1˝
web127.0.0.1:0 :	
¨BdÄ@2 
*0ÄJá
	/dev/nullz[%START_TIME(%Y-%m-%dT%H:%M:%E3S)%] %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH):20% %RESPONSE_CODE% %RESPONSE_FLAGS%
Rü
api	api.localapi.local:8080*.svc.local[::1]:80Õ
exactû/health"
x-canaryalways"
	x-versionv2@"
x-tail"-beta"
x-re*[a-z]+[0-9]{1,3}"
x-num2d"
	x-present8*GET2http:

debug1:	
trace@ê?"#

a"/healthzupstream.local.
grpcJ
pkg.SvcGet	
x-mdv"

bC
regex/users/[0-9]+"'

aZ

b


"!
prefix
/api/"

a"
/R
rest*
all
/"

az
json-logged127.0.0.1:0 JA
	/dev/null4

status%RESPONSE_CODE%

ua%REQ(USER-AGENT)%R
v*
v
/"

bb
a"

127.0.0.1:18081

[::1]:18082 (2:
 2B/health (2:J
Z
b

127.0.0.1:18083 