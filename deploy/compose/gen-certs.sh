#!/bin/sh
# Makes the compose stack's development PKI in $CERTS_DIR (default /certs),
# with openssl; run by the one-shot `certs` service. Idempotent: a CA valid
# for another day is kept, and so is every certificate it signed that is
# valid for another day; anything missing or expiring is (re)issued.
#
# Layout, the same as a cert-manager Certificate's Secret (what the Helm
# chart mounts), one directory per identity:
#   ca.crt ca.key                      the CA (ca.key readable by root only)
#   router/   tls.crt tls.key ca.crt   URI SAN veltrix://service/router
#   storage/  tls.crt tls.key ca.crt   veltrix://service/storage (storage1..3)
#   migrator/ tls.crt tls.key ca.crt   veltrix://service/migrator
#   admin/    tls.crt tls.key ca.crt   client certificate of principal "admin"
#                                      (veltrix://principal/admin, in --auth-admins)
#   auth.key                           the routers' --auth-key-file (32 bytes, hex)
# Files are owned by 65532, the distroless nonroot user the Veltrix images run as.
set -eu
dir=${CERTS_DIR:-/certs}
days=${CERT_DAYS:-365}
mkdir -p "$dir"
cd "$dir"

valid() { [ -s "$1" ] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1; }

if ! valid ca.crt || [ ! -s ca.key ]; then
	echo "certs: new CA"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-subj "/O=veltrix dev/CN=veltrix dev CA" -keyout ca.key -out ca.crt \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	rm -rf router storage migrator admin # signed by the old CA
fi

# issue NAME CN SAN EKU
issue() {
	name=$1 cn=$2 san=$3 eku=$4
	mkdir -p "$name"
	if valid "$name/tls.crt" && openssl verify -CAfile ca.crt "$name/tls.crt" >/dev/null 2>&1; then
		cp ca.crt "$name/ca.crt"
		return
	fi
	echo "certs: issuing $name ($san)"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=veltrix dev/CN=$cn" \
		-keyout "$name/tls.key.new" -out "$name/req.csr" 2>/dev/null
	printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' "$san" "$eku" >"$name/ext.cnf"
	openssl x509 -req -in "$name/req.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
		-extfile "$name/ext.cnf" -out "$name/tls.crt.new" 2>/dev/null
	rm -f "$name/req.csr" "$name/ext.cnf"
	# Key first, then certificate, each by rename: a service reloading
	# meanwhile sees a mismatched pair at worst, refuses it and keeps its
	# old one until the next poll.
	mv "$name/tls.key.new" "$name/tls.key"
	mv "$name/tls.crt.new" "$name/tls.crt"
	cp ca.crt "$name/ca.crt"
}

both=serverAuth,clientAuth
issue router veltrix-router "URI:veltrix://service/router,DNS:router,DNS:localhost,IP:127.0.0.1" $both
issue storage veltrix-storage "URI:veltrix://service/storage,DNS:storage1,DNS:storage2,DNS:storage3,DNS:localhost,IP:127.0.0.1" $both
issue migrator veltrix-migrator "URI:veltrix://service/migrator,DNS:migrator,DNS:localhost,IP:127.0.0.1" $both
issue admin admin "URI:veltrix://principal/admin" clientAuth

[ -s auth.key ] || { echo "certs: new auth key"; openssl rand -hex 32 >auth.key; }

chown -R 65532:65532 "$dir"
chown 0:0 ca.key ca.srl 2>/dev/null || chown 0:0 ca.key # only this script signs
chmod 0444 ca.crt */ca.crt */tls.crt
chmod 0400 ca.key auth.key */tls.key
echo "certs: ready in $dir"
