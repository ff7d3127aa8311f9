package media

import (
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"

	"github.com/matrixos/matrixos/internal/mxhttp"
)

// FederationRoutes registers the federation media endpoints with h (which
// adds X-Matrix authentication): this server's own media, as spec v1.11
// serves it to other servers, in a multipart/mixed body.
func (s *Service) FederationRoutes(h func(pattern string, handler http.Handler)) {
	const v1 = "/_matrix/federation/v1/media"
	h("GET "+v1+"/download/{mediaId}", mxhttp.Handle(s.fedDownload))
	h("GET "+v1+"/thumbnail/{mediaId}", mxhttp.Handle(s.fedThumbnail))
}

// fedDownload is GET /_matrix/federation/v1/media/download/{mediaId}.
func (s *Service) fedDownload(w http.ResponseWriter, r *http.Request) (any, error) {
	wait, err := waitParam(r)
	if err != nil {
		return nil, err
	}
	m, err := s.lookupLocal(r.Context(), r.PathValue("mediaId"), wait)
	if err != nil {
		return nil, err
	}
	rd, err := s.Open(m)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	writeMultipart(w, m.ContentType, contentDisposition(dispositionType(m.ContentType), m.Filename), rd)
	return nil, nil
}

// fedThumbnail is GET /_matrix/federation/v1/media/thumbnail/{mediaId}.
func (s *Service) fedThumbnail(w http.ResponseWriter, r *http.Request) (any, error) {
	width, height, method, err := thumbnailParams(r)
	if err != nil {
		return nil, err
	}
	wait, err := waitParam(r)
	if err != nil {
		return nil, err
	}
	m, err := s.lookupLocal(r.Context(), r.PathValue("mediaId"), wait)
	if err != nil {
		return nil, err
	}
	t, rd, err := s.openThumbnail(r.Context(), m, width, height, method)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	writeMultipart(w, t.ContentType, contentDisposition("inline", thumbnailName(t)), rd)
	return nil, nil
}

// writeMultipart answers with the spec's two parts: the metadata (an
// empty JSON object) and the content.
func writeMultipart(w http.ResponseWriter, contentType, disposition string, content io.Reader) {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err != nil {
		return
	}
	if _, err := io.WriteString(meta, "{}"); err != nil {
		return
	}
	part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {contentType}, "Content-Disposition": {disposition}})
	if err != nil {
		return
	}
	if _, err := io.Copy(part, content); err != nil {
		return // the connection broke: the missing closing boundary tells the other side
	}
	mw.Close()
}
