// dcmjs-dimse as SCU, for tests/system/test_interop.py (npm install in this folder first).
//   node dcmjs_client.js echo  HOST PORT CALLED CALLING
//   node dcmjs_client.js store HOST PORT CALLED CALLING FILE...
//   node dcmjs_client.js find  HOST PORT CALLED CALLING PATIENTID_PATTERN   (Study Root, STUDY)
//   node dcmjs_client.js move  HOST PORT CALLED CALLING DESTINATION STUDYUID
//   node dcmjs_client.js get   HOST PORT CALLED CALLING FOLDER STUDYUID
// Prints "ANSWER <json>" per C-FIND answer, "RECEIVED <file>" per C-GET instance and
// "STATUS <hex>" per final response; exits 0 once the association is closed after every final
// response was a success, else 1.
'use strict';
const path = require('path');
const { Client, requests, responses, constants, log } = require('dcmjs-dimse');
const { CEchoRequest, CStoreRequest, CFindRequest, CMoveRequest, CGetRequest } = requests;
const { CStoreResponse } = responses;
const { Status } = constants;

const [operation, host, port, called, calling, ...rest] = process.argv.slice(2);
log.setLevel('error');
const client = new Client();
const outcomes = [];

function add(request, onPending) {
  request.on('response', (response) => {
    const status = response.getStatus();
    if (status === Status.Pending) {
      if (onPending) onPending(response);
      return;
    }
    outcomes.push(status);
    console.log('STATUS ' + status.toString(16));
  });
  client.addRequest(request);
}

if (operation === 'echo') {
  add(new CEchoRequest());
} else if (operation === 'store') {
  rest.forEach((file) => add(new CStoreRequest(file)));
} else if (operation === 'find') {
  add(CFindRequest.createStudyFindRequest({
    PatientID: rest[0], PatientName: '', StudyInstanceUID: '' }), (response) => {
    if (response.hasDataset()) {
      const elements = response.getDataset().getElements();
      console.log('ANSWER ' + JSON.stringify({
        PatientID: elements.PatientID, PatientName: elements.PatientName,
        StudyInstanceUID: elements.StudyInstanceUID }));
    }
  });
} else if (operation === 'move') {
  add(CMoveRequest.createStudyMoveRequest(rest[0], rest[1]));
} else if (operation === 'get') {
  client.on('cStoreRequest', (request, callback) => {
    const dataset = request.getDataset();
    const file = path.join(rest[0], dataset.getElement('SOPInstanceUID') + '.dcm');
    dataset.toFile(file);
    console.log('RECEIVED ' + file);
    const response = CStoreResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  });
  add(CGetRequest.createStudyGetRequest(rest[1]));
} else {
  console.error('unknown operation ' + operation);
  process.exit(2);
}
client.on('networkError', (error) => {
  console.error('network error: ' + error);
  process.exit(1);
});
client.on('closed', () => {
  const expected = operation === 'store' ? rest.length : 1;
  const ok = outcomes.length === expected && outcomes.every((status) => status === Status.Success);
  process.exit(ok ? 0 : 1);
});
client.send(host, Number(port), calling, called);
